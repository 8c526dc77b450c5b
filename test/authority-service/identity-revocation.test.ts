/**
 * A leaked key whose thief renewed first: revoking the leaked serial leaves the renewed
 * certificate valid (it has another serial), revoking the identity refuses both. Operators'
 * identities can be revoked the same way; only operators may revoke.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { enroll } from 'agent-trust/authority-service'
import { createIdentityRequest, type TlsCredentials } from 'agent-trust/identity'
import { CONTEXT, READ_SCOPE, TRUST_DOMAIN } from '../support/identity.js'
import { startService, type ServiceFixture } from '../support/authority-service.js'

const AGENT = 'agent-summarizer-v2'
/** A refused certificate: 401 on a kept-alive connection, or the connection closed at the handshake. */
async function refused(p: Promise<unknown>): Promise<void> {
  const e = (await p.then(
    () => ({ code: 'accepted' }),
    (x: unknown) => x,
  )) as { code?: string }
  expect(['ERR_PEER_UNAUTHENTICATED', 'ERR_AUTHORITY_UNAVAILABLE']).toContain(e.code)
}

const mintRequest = { subject: AGENT, audience: 'agent-database-reader', scope: [READ_SCOPE], operation: 'read' as const, context: CONTEXT }

describe('revoking a certificate identity through the authority service', () => {
  let f: ServiceFixture
  let alice: TlsCredentials

  beforeAll(async () => {
    f = await startService({ operators: ['alice', 'bob'] })
    alice = await f.credentials('alice', 'operator')
  })
  afterAll(() => f?.close())

  /** The thief's renewal: a fresh key, a certificate from the leaked one. */
  async function renewFrom(leaked: TlsCredentials, kind: 'agent' | 'operator', id: string): Promise<TlsCredentials> {
    const { csr, privateKeyPem } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind, id } })
    const renewed = await f.client(leaked).renewCertificate(csr)
    return { cert: renewed.certificatePem, key: privateKeyPem, ca: renewed.caPem }
  }

  it('a serial revoked after a renewal leaves the renewed certificate; the identity revocation refuses it', async () => {
    const leaked = await f.credentials(AGENT)
    const thief = await renewFrom(leaked, 'agent', AGENT)
    await f.client(alice).revokeCertificate(leaked.issued.serialNumber)
    await refused(f.client(leaked).mint(mintRequest))
    // What a serial can reach: the thief's certificate still mints.
    expect(typeof (await f.client(thief).mint(mintRequest))).toBe('string')

    await f.client(alice).revokeIdentity({ kind: 'agent', id: AGENT })
    await refused(f.client(thief).mint(mintRequest))
    await refused(renewFrom(thief, 'agent', AGENT))
    // The agent is not quarantined: enrolled again at once (a join token, a new key), it mints.
    const { csr, privateKeyPem } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: AGENT } })
    const token = f.service.createEnrollmentToken(AGENT)
    const enrolled = await enroll({ url: f.enrollUrl, ca: f.ca.certificatePem, token, csr })
    const again = { cert: enrolled.certificatePem, key: privateKeyPem, ca: enrolled.caPem }
    // Its notBefore starts after the revocation (not backdated into it); wait until it is valid.
    await new Promise((r) => setTimeout(r, 1100))
    expect(typeof (await f.client(again).mint(mintRequest))).toBe('string')
    expect(f.audit.events.some((e) => e.action === 'revoke' && e.destination === AGENT && e.note?.startsWith('agent certificates'))).toBe(
      true,
    )
  })

  it("an operator's identity: its renewed certificate loses every operator route", async () => {
    const bob = await f.credentials('bob', 'operator')
    const renewed = await renewFrom(bob, 'operator', 'bob')
    await f.client(alice).revokeIdentity({ kind: 'operator', id: 'bob' })
    await refused(f.client(renewed).revokeAgent('agent-orchestrator'))
    await refused(f.client(bob).createEnrollmentToken(AGENT))
  })

  it('is for operators only, and refuses an id that names no certificate identity', async () => {
    const agent = await f.credentials('agent-orchestrator')
    await expect(f.client(agent).revokeIdentity({ kind: 'agent', id: AGENT })).rejects.toMatchObject({ code: 'ERR_PEER_FORBIDDEN' })
    await expect(f.client(alice).revokeIdentity({ kind: 'agent', id: 'has space' })).rejects.toMatchObject({ code: 'ERR_REQUEST_INVALID' })
    await expect(f.client(alice).revokeIdentity({ kind: 'authority' as 'agent', id: 'x' })).rejects.toMatchObject({
      code: 'ERR_REQUEST_INVALID',
    })
  })
})
