/**
 * The service's revocation of a whole lineage: every descendant is quarantined in the store
 * and its certificate identity revoked, with the store writes a bounded number at a time
 * (never one after another for thousands of agents, never all at once).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AGENT_QUARANTINED, MemoryReplayRevocationStore } from 'agent-trust'
import { STORE_WRITE_CONCURRENCY } from '../../src/lib/bounded.js'
import { enroll } from 'agent-trust/authority-service'
import { createIdentityRequest } from 'agent-trust/identity'
import { READ_SCOPE, TRUST_DOMAIN } from '../support/identity.js'
import { startService, type ServiceFixture } from '../support/authority-service.js'

const ROOT = 'agent-orchestrator'
const CHILDREN = 120

/** A memory store whose token revocations take a moment, counting how many run at once. */
class SlowStore extends MemoryReplayRevocationStore {
  running = 0
  most = 0
  marked = 0
  override async revokeToken(jti: string, forgetAtMs: number): Promise<void> {
    this.running++
    this.most = Math.max(this.most, this.running)
    try {
      await new Promise((resolve) => setTimeout(resolve, 2))
      await super.revokeToken(jti, forgetAtMs)
      this.marked++
    } finally {
      this.running--
    }
  }
}

describe('revoking a lineage through the authority service', () => {
  const store = new SlowStore()
  let f: ServiceFixture
  const ids = Array.from({ length: CHILDREN }, (_, i) => `worker-${i}`)

  beforeAll(async () => {
    f = await startService({ store })
    for (const id of ids)
      await f.authority.spawn({ parent: ROOT, child: { id, trustLevel: 'L2', grants: [READ_SCOPE], maxDelegationDepth: 0 } })
  })
  afterAll(() => f?.close())

  it('quarantines and revokes the certificate identity of every descendant, a bounded number at a time', async () => {
    const before = store.marked
    const issuedBefore = Date.now() - 1000
    const revoked = await f.service.revokeAgent(ROOT, { by: 'alice' })
    expect(new Set(revoked)).toEqual(new Set([ROOT, ...ids]))
    expect(store.marked - before).toBe(CHILDREN + 1)
    expect(store.most).toBeGreaterThan(1)
    expect(store.most).toBeLessThanOrEqual(STORE_WRITE_CONCURRENCY)
    for (const id of [ROOT, ...ids]) {
      expect(await f.feed.isQuarantined(id)).toBe(true)
      const status = await f.feed.certificates.status({
        serialNumber: '01',
        spiffeId: f.ca.spiffeIdOf({ kind: 'agent', id }),
        notBeforeMs: issuedBefore,
      })
      expect(status).toBe('identity-revoked')
    }
  })
})

describe('a quarantine made elsewhere (another replica, the CLI): only in the shared store', () => {
  const store = new MemoryReplayRevocationStore()
  let f: ServiceFixture

  beforeAll(async () => {
    f = await startService({ store })
    await f.authority.spawn({ parent: ROOT, child: { id: 'worker-far', trustLevel: 'L2', grants: [READ_SCOPE], maxDelegationDepth: 0 } })
  })
  afterAll(() => f?.close())

  it("refuses a descendant's certificate renewal and enrollment once an ancestor is quarantined in the store", async () => {
    const worker = await f.credentials('worker-far')
    const renew = async () => {
      const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: 'worker-far' } })
      return f.client(worker).renewCertificate(csr)
    }
    await expect(renew()).resolves.toMatchObject({ serialNumber: expect.any(String) })
    // Written straight to the store, as another replica's revocation is: this service never saw it.
    await store.revokeAgent(ROOT, AGENT_QUARANTINED)
    await expect(renew()).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    const token = f.service.createEnrollmentToken('worker-far')
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: 'worker-far' } })
    await expect(enroll({ url: f.enrollUrl, ca: f.ca.certificatePem, token, csr })).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
  })
})
