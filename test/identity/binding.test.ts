/**
 * Certificate-bound tokens (RFC 8705) end to end over real mTLS: a token stolen from one
 * agent is useless to another, and useless to the same agent after its key changed.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryReplayRevocationStore, type Verifier } from 'agent-trust'
import { createPeerIdentity, mtlsClientOptions, type CertificateAuthority, type TlsCredentials } from 'agent-trust/identity'
import {
  agentCredentials,
  CONTEXT,
  makeCa,
  MANIFEST,
  READ,
  READ_SCOPE,
  request,
  startMtlsServer,
  TRUST_DOMAIN,
  type TestServer,
} from '../support/identity.js'

describe('tokens bound to certificates', () => {
  let ca: CertificateAuthority
  let authority: Authority
  let verifier: Verifier
  let server: TestServer
  let summarizer: Awaited<ReturnType<typeof agentCredentials>>
  let orchestrator: Awaited<ReturnType<typeof agentCredentials>>

  beforeAll(async () => {
    ca = await makeCa()
    const store = new MemoryReplayRevocationStore()
    authority = await Authority.create({ manifest: MANIFEST, store })
    verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
    const peer = createPeerIdentity({ trustDomain: TRUST_DOMAIN })
    // The database reader: token in the Authorization header, caller from the certificate.
    server = await startMtlsServer(await agentCredentials(ca, 'agent-database-reader'), async (req, res) => {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '')
      const cap = await verifier.verify(token, { ...READ, peer: peer(req) })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ allowed: true, presenter: cap.presenter }))
    })
    ;[summarizer, orchestrator] = await Promise.all([
      agentCredentials(ca, 'agent-summarizer-v2'),
      agentCredentials(ca, 'agent-orchestrator'),
    ])
  })
  afterAll(async () => {
    await server.close()
  })

  const connect = (c: TlsCredentials) =>
    mtlsClientOptions(c, { trustDomain: TRUST_DOMAIN, server: { kind: 'agent', id: 'agent-database-reader' } })
  const call = (c: TlsCredentials, token: string) => request(server.url, connect(c), { headers: { authorization: `Bearer ${token}` } })
  const mintBound = (thumbprint: string, subject = 'agent-summarizer-v2') =>
    authority.mint({
      subject,
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
      certificateThumbprint: thumbprint,
    })

  it('allows the agent the token is bound to, on its own connection', async () => {
    const token = await mintBound(summarizer.issued.thumbprint)
    expect(await call(summarizer, token)).toEqual({ status: 200, body: { allowed: true, presenter: 'agent-summarizer-v2' } })
  })

  it('denies a token stolen from the summarizer when the orchestrator presents it (ERR_TOKEN_BINDING)', async () => {
    const stolen = await mintBound(summarizer.issued.thumbprint)
    expect(await call(orchestrator, stolen)).toMatchObject({ status: 403, body: { error: { code: 'ERR_TOKEN_BINDING' } } })
    // The thief's failure did not consume it: the rightful holder still can use it once.
    expect((await call(summarizer, stolen)).status).toBe(200)
  })

  it('denies an unbound token presented by another authenticated agent (sub must be the peer)', async () => {
    const unbound = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    expect(await call(orchestrator, unbound)).toMatchObject({ body: { error: { code: 'ERR_TOKEN_BINDING' } } })
  })

  it('denies the same agent after a key change: a renewed certificate does not inherit old tokens', async () => {
    const token = await mintBound(summarizer.issued.thumbprint)
    const renewed = await agentCredentials(ca, 'agent-summarizer-v2')
    expect(await call(renewed, token)).toMatchObject({ body: { error: { code: 'ERR_TOKEN_BINDING' } } })
  })

  it('denies a bound token when no certificate is presented at all', async () => {
    const token = await mintBound(summarizer.issued.thumbprint)
    await expect(verifier.verify(token, READ)).rejects.toMatchObject({ code: 'ERR_TOKEN_BINDING' })
  })

  it('lets the holder exchange a token bound to its caller, and binds the new one to the holder', async () => {
    const forSummarizer = await authority.mint({
      subject: 'agent-orchestrator',
      audience: 'agent-summarizer-v2',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
      certificateThumbprint: orchestrator.issued.thumbprint,
    })
    const delegated = await authority.exchange({
      token: forSummarizer,
      holder: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      certificateThumbprint: summarizer.issued.thumbprint,
      peer: { agentId: 'agent-summarizer-v2', certificateThumbprint: summarizer.issued.thumbprint },
    })
    expect(await call(orchestrator, delegated)).toMatchObject({ body: { error: { code: 'ERR_TOKEN_BINDING' } } })
    expect(await call(summarizer, delegated)).toMatchObject({ status: 200, body: { presenter: 'agent-summarizer-v2' } })
    // An exchange by someone authenticated as another agent than the holder is refused.
    await expect(
      authority.exchange({
        token: forSummarizer,
        holder: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        peer: { agentId: 'agent-orchestrator' },
      }),
    ).rejects.toMatchObject({ code: 'ERR_TOKEN_BINDING' })
  })

  it('property: any certificate other than the bound one is refused', async () => {
    const bound = summarizer.issued.thumbprint
    const thumb = fc.stringMatching(/^[A-Za-z0-9_-]{43}$/).filter((t) => t !== bound)
    await fc.assert(
      fc.asyncProperty(thumb, async (presented) => {
        const token = await mintBound(bound)
        await expect(
          verifier.verify(token, { ...READ, peer: { agentId: 'agent-summarizer-v2', certificateThumbprint: presented } }),
        ).rejects.toMatchObject({ code: 'ERR_TOKEN_BINDING' })
      }),
      { numRuns: 40 },
    )
  })
})
