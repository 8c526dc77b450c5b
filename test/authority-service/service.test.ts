/**
 * The authority as an mTLS service, through its real client (undici, keep-alive) on loopback.
 * Callers are identified by their certificate only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createVerifier, type Verifier } from 'agent-trust'
import { createAuthorityClient, enroll, PATHS } from 'agent-trust/authority-service'
import { AgentIdentity, createIdentityRequest, mtlsClientOptions, type TlsCredentials } from 'agent-trust/identity'
import { CONTEXT, READ, READ_SCOPE, request, TRUST_DOMAIN } from '../support/identity.js'
import { startService, type ServiceFixture } from '../support/authority-service.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

const SUMMARIZER = 'agent-summarizer-v2'
const mintReq = (over: Record<string, unknown> = {}) => ({
  subject: SUMMARIZER,
  audience: 'agent-database-reader',
  scope: [READ_SCOPE],
  operation: 'read' as const,
  context: CONTEXT,
  ...over,
})
const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as Record<string, any>

describe('the authority client options', () => {
  it('validates its options: createAuthorityClient and enroll name the option, never the token', async () => {
    const tls = { cert: 'c', key: 'k', ca: 'a' }
    await expectOptionMisuse(() => createAuthorityClient({ url: 'http://authority.example', tls }), { path: 'url' })
    await expectOptionMisuse(() => createAuthorityClient({ url: [], tls }), { path: 'url' })
    await expectOptionMisuse(() => createAuthorityClient({ url: ['https://a.example', 'not a url'], tls }), { path: 'url' })
    await expectOptionMisuse(() => createAuthorityClient({ url: 'https://a.example', tls: {} as never }), { path: 'tls' })
    await expectOptionMisuse(() => createAuthorityClient({ url: 'https://a.example', tls, timeoutMs: 0 }), { path: 'timeoutMs' })
    await expectOptionMisuse(() => createAuthorityClient({ url: 'https://a.example', tls, connections: 0.5 }), { path: 'connections' })
    await expectOptionMisuse(() => createAuthorityClient({ url: 'https://a.example', tls, timeout: 5 } as never), { path: 'timeout' })
    await expectOptionMisuse(() => createAuthorityClient({ url: 'https://a.example', tls, [HOSTILE_KEY]: 1 } as never), {
      path: HOSTILE_KEY_PATH,
    })
    const token = 'join-token-secret-value'
    const e = { url: 'https://a.example', ca: '-----BEGIN CERTIFICATE-----', token, csr: 'csr' }
    await expectOptionMisuse(() => enroll({ ...e, url: 'http://a.example' }), { path: 'url', secrets: [token] })
    await expectOptionMisuse(() => enroll({ ...e, ca: 'x' }), { path: 'ca', secrets: [token] })
    await expectOptionMisuse(() => enroll({ ...e, token: '' }), { path: 'token' })
    await expectOptionMisuse(() => enroll({ ...e, trustDomain: 'Bad Domain' }), { path: 'trustDomain', secrets: [token] })
    await expectOptionMisuse(() => enroll({ ...e, tokne: token } as never), { path: 'tokne', secrets: [token] })
  })
})

describe('the authority service', () => {
  let f: ServiceFixture
  let summarizer: Awaited<ReturnType<ServiceFixture['credentials']>>
  let orchestrator: Awaited<ReturnType<ServiceFixture['credentials']>>
  let alice: TlsCredentials
  let verifier: Verifier

  beforeAll(async () => {
    f = await startService()
    ;[summarizer, orchestrator, alice] = await Promise.all([
      f.credentials(SUMMARIZER),
      f.credentials('agent-orchestrator'),
      f.credentials('alice', 'operator'),
    ])
    verifier = createVerifier({ id: 'agent-database-reader', issuers: [f.authority.trustedIssuer()], store: f.feed, mode: 'enforce' })
  })
  afterAll(async () => {
    await f.close()
  })

  describe('enrollment (keys generated where the agent runs)', () => {
    it('issues a first certificate for a single-use join token and a CSR', async () => {
      const token = f.service.createEnrollmentToken('agent-database-reader')
      const identity = await AgentIdentity.obtain({
        trustDomain: TRUST_DOMAIN,
        workload: { kind: 'agent', id: 'agent-database-reader' },
        obtain: (csr) => enroll({ url: f.enrollUrl, ca: f.ca.certificatePem, token, csr }),
      })
      expect(identity.certificate.workload).toEqual({ kind: 'agent', id: 'agent-database-reader' })
      // The token is burnt.
      const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: 'agent-database-reader' } })
      await expect(enroll({ url: f.enrollUrl, ca: f.ca.certificatePem, token, csr })).rejects.toMatchObject({
        code: 'ERR_PEER_UNAUTHENTICATED',
        details: { rule: 'enrollment-token' },
      })
    })

    it('refuses a CSR for another agent than the token was made for', async () => {
      const token = f.service.createEnrollmentToken(SUMMARIZER)
      const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: 'agent-orchestrator' } })
      await expect(enroll({ url: f.enrollUrl, ca: f.ca.certificatePem, token, csr })).rejects.toMatchObject({
        code: 'ERR_CSR_DENIED',
        details: { rule: 'identity' },
      })
    })

    it('refuses a guessed token, and serves nothing but enrollment and the JWKS without a certificate', async () => {
      const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: SUMMARIZER } })
      await expect(enroll({ url: f.enrollUrl, ca: f.ca.certificatePem, token: 'A'.repeat(43), csr })).rejects.toMatchObject({
        code: 'ERR_PEER_UNAUTHENTICATED',
      })
      const plain = mtlsClientOptions(
        { ca: f.ca.certificatePem },
        { trustDomain: TRUST_DOMAIN, server: { kind: 'authority', id: f.authority.id } },
      )
      expect(await request(f.enrollUrl, plain, { path: PATHS.mint, method: 'POST', body: mintReq() })).toMatchObject({
        status: 404,
        body: { error: { code: 'ERR_REQUEST_INVALID' } },
      })
      expect(await request(f.enrollUrl, plain, { path: PATHS.jwks })).toMatchObject({ status: 200, body: f.authority.jwks() })
    })

    it('publishes its keys at /.well-known/jwks.json and an RFC 8414 metadata document, without a client certificate', async () => {
      const plain = mtlsClientOptions(
        { ca: f.ca.certificatePem },
        { trustDomain: TRUST_DOMAIN, server: { kind: 'authority', id: f.authority.id } },
      )
      expect(await request(f.enrollUrl, plain, { path: '/.well-known/jwks.json' })).toMatchObject({ status: 200, body: f.authority.jwks() })
      const origin = new URL(f.enrollUrl).origin
      const metadata = await request(f.enrollUrl, plain, { path: '/.well-known/oauth-authorization-server' })
      expect(metadata).toMatchObject({
        status: 200,
        body: {
          issuer: origin,
          agent_trust_issuer: f.authority.id,
          jwks_uri: `${origin}/.well-known/jwks.json`,
          token_endpoint: `${origin}${PATHS.mint}`,
          token_endpoint_auth_methods_supported: ['tls_client_auth'],
          tls_client_certificate_bound_access_tokens: true,
        },
      })
      // A Host header that is not a host name is never echoed into the document.
      const forged = await request(f.enrollUrl, plain, { path: '/.well-known/oauth-authorization-server', headers: { host: 'evil"<x>' } })
      expect(JSON.stringify(forged.body)).not.toContain('evil')
    })

    it('does not enroll unknown agents', () => {
      expect(() => f.service.createEnrollmentToken('agent-nobody')).toThrow(expect.objectContaining({ code: 'ERR_AGENT_UNKNOWN' }))
    })

    it('renews over mTLS with a new key: same identity, new thumbprint', async () => {
      const client = f.client(orchestrator)
      const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: 'agent-orchestrator' } })
      const renewed = await client.renewCertificate(csr)
      expect(renewed.certificatePem).not.toBe(orchestrator.cert)
      // Renewal is for the caller's own identity only.
      const other = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: SUMMARIZER } })
      await expect(client.renewCertificate(other.csr)).rejects.toMatchObject({ code: 'ERR_CSR_DENIED' })
    })
  })

  describe('minting for the caller, bound to its certificate', () => {
    it('mints with sub and cnf from the certificate, and the token verifies only on that certificate', async () => {
      const client = f.client(summarizer)
      const token = await client.mint(mintReq())
      const claims = claimsOf(token)
      expect(claims.sub).toBe(SUMMARIZER)
      expect(claims.cnf).toEqual({ 'x5t#S256': summarizer.issued.thumbprint })
      await expect(
        verifier.verify(token, { ...READ, peer: { agentId: 'agent-orchestrator', certificateThumbprint: orchestrator.issued.thumbprint } }),
      ).rejects.toMatchObject({ code: 'ERR_TOKEN_BINDING' })
      await expect(
        verifier.verify(token, { ...READ, peer: { agentId: SUMMARIZER, certificateThumbprint: summarizer.issued.thumbprint } }),
      ).resolves.toMatchObject({ presenter: SUMMARIZER })
    })

    it('mints for a tool call and returns its scope', async () => {
      const r = await f.client(summarizer).mintForTool({
        subject: SUMMARIZER,
        audience: 'agent-database-reader',
        tool: 'read_documents',
        args: { namespace: 'user-123' },
        context: CONTEXT,
      })
      expect(r).toMatchObject({ scope: READ_SCOPE, operation: 'read' })
    })

    it('never trusts the body: another subject is refused, and so is binding to another certificate', async () => {
      const client = f.client(orchestrator)
      await expect(client.mint(mintReq())).rejects.toMatchObject({ code: 'ERR_PEER_FORBIDDEN', details: { rule: 'on-behalf' } })
      await expect(
        client.mint(mintReq({ subject: 'agent-orchestrator', certificateThumbprint: summarizer.issued.thumbprint })),
      ).rejects.toMatchObject({ code: 'ERR_TOKEN_BINDING' })
    })

    it("reports the kernel's own denials with their codes", async () => {
      const client = f.client(summarizer)
      await expect(client.mint(mintReq({ scope: ['db:read:documents:namespace:user-999'] }))).rejects.toMatchObject({
        code: 'ERR_SCOPE_DENIED',
      })
      await expect(client.mint(mintReq({ audience: 'agent-nobody' }))).rejects.toMatchObject({ code: 'ERR_AGENT_UNKNOWN' })
      await expect(client.spawn({ parent: SUMMARIZER, child: { id: 'child-x', trustLevel: 'L1' } })).rejects.toMatchObject({
        code: 'ERR_SPAWN_DENIED',
      })
    })

    it('exchanges a token the caller holds, binding the new one to the caller', async () => {
      const orch = f.client(orchestrator)
      const forSummarizer = await orch.mint({
        subject: 'agent-orchestrator',
        audience: SUMMARIZER,
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
      // The orchestrator cannot redeem a token it sent to someone else.
      await expect(
        orch.exchange({ token: forSummarizer, holder: 'agent-orchestrator', audience: 'agent-database-reader' }),
      ).rejects.toMatchObject({ code: 'ERR_TOKEN_AUDIENCE' })
      const delegated = await f.client(summarizer).exchange({ token: forSummarizer, holder: SUMMARIZER, audience: 'agent-database-reader' })
      const c = claimsOf(delegated)
      expect(c).toMatchObject({ sub: 'agent-orchestrator', act: { sub: SUMMARIZER }, cnf: { 'x5t#S256': summarizer.issued.thumbprint } })
      await expect(
        verifier.verify(delegated, { ...READ, peer: { agentId: SUMMARIZER, certificateThumbprint: summarizer.issued.thumbprint } }),
      ).resolves.toMatchObject({ presenter: SUMMARIZER })
    })

    it('spawns for the calling parent', async () => {
      const child = await f
        .client(orchestrator)
        .spawn({ parent: 'agent-orchestrator', child: { id: 'agent-orchestrator-child-1', trustLevel: 'L2', grants: [READ_SCOPE] } })
      expect(child).toMatchObject({ id: 'agent-orchestrator-child-1', parent: 'agent-orchestrator' })
    })

    it('retires a child for its calling parent only', async () => {
      await f
        .client(orchestrator)
        .spawn({ parent: 'agent-orchestrator', child: { id: 'agent-orchestrator-child-2', trustLevel: 'L2', grants: [READ_SCOPE] } })
      // Another agent can neither retire it nor claim to be its parent.
      await expect(f.client(summarizer).retire({ parent: SUMMARIZER, agentId: 'agent-orchestrator-child-2' })).rejects.toMatchObject({
        code: 'ERR_SPAWN_DENIED',
        details: { rule: 'retire-ancestor' },
      })
      await expect(
        f.client(summarizer).retire({ parent: 'agent-orchestrator', agentId: 'agent-orchestrator-child-2' }),
      ).rejects.toMatchObject({ code: 'ERR_PEER_FORBIDDEN' })
      expect(await f.client(orchestrator).retire({ parent: 'agent-orchestrator', agentId: 'agent-orchestrator-child-2' })).toEqual([
        'agent-orchestrator-child-2',
      ])
      await expect(
        f.client(orchestrator).retire({ parent: 'agent-orchestrator', agentId: 'agent-orchestrator-child-2' }),
      ).rejects.toMatchObject({
        code: 'ERR_AGENT_UNKNOWN',
      })
    })

    it('serves the JWKS over mTLS too', async () => {
      expect(await f.client(summarizer).jwks()).toEqual(f.authority.jwks())
    })
  })

  describe('operators', () => {
    it('refuses operator endpoints to agents and to operators not on the list; refuses minting to operators', async () => {
      await expect(f.client(summarizer).revokeAgent(SUMMARIZER)).rejects.toMatchObject({
        code: 'ERR_PEER_FORBIDDEN',
        details: { rule: 'operator-only' },
      })
      const bob = await f.credentials('bob', 'operator')
      await expect(f.client(bob).revokeAgent(SUMMARIZER)).rejects.toMatchObject({ code: 'ERR_PEER_FORBIDDEN' })
      await expect(f.client(alice).mint(mintReq({ subject: 'alice' }))).rejects.toMatchObject({
        code: 'ERR_PEER_FORBIDDEN',
        details: { rule: 'agent-only' },
      })
    })

    it("an agent requests changes of its own level only; an operator may request any agent's", async () => {
      await expect(
        f.client(summarizer).requestTrustChange({ agentId: 'agent-orchestrator', level: 'L0', reason: 'lower my rival' }),
      ).rejects.toMatchObject({ code: 'ERR_PEER_FORBIDDEN', details: { rule: 'on-behalf' } })
      expect(f.authority.listTrustChanges().some((r) => r.reason === 'lower my rival')).toBe(false)
      const byOperator = await f.client(alice).requestTrustChange({ agentId: 'agent-orchestrator', level: 'L2', reason: 'review' })
      await f.client(alice).decideTrustChange(byOperator.id, { approved: false, note: 'not now' })
    })

    it("refuses a trust-change reason or decision note that could paint the approver's screen", async () => {
      for (const reason of ['lower\u001b[1A\u001b[2KApprove lowering', 'ok\u202eL0 ot', 'a\u200bb', 'x\u009b2J', 'line\nbreak']) {
        await expect(f.client(summarizer).requestTrustChange({ agentId: SUMMARIZER, level: 'L1', reason })).rejects.toMatchObject({
          code: 'ERR_REQUEST_INVALID',
        })
      }
      const req = await f.client(summarizer).requestTrustChange({ agentId: SUMMARIZER, level: 'L1', reason: 'plain reason' })
      await expect(f.client(alice).decideTrustChange(req.id, { approved: false, note: 'no\u001b[2K' })).rejects.toMatchObject({
        code: 'ERR_REQUEST_INVALID',
      })
      await f.client(alice).decideTrustChange(req.id, { approved: false, note: 'plain' })
    })

    it('routes trust changes to a human decision', async () => {
      const req = await f.client(summarizer).requestTrustChange({ agentId: SUMMARIZER, level: 'L1', reason: 'reduce exposure' })
      expect(req).toMatchObject({ status: 'pending', requestedBy: `spiffe://${TRUST_DOMAIN}/agent/${SUMMARIZER}` })
      await expect(f.client(summarizer).decideTrustChange(req.id, { approved: true })).rejects.toMatchObject({ code: 'ERR_PEER_FORBIDDEN' })
      const ops = f.client(alice)
      expect((await ops.listTrustChanges('pending')).map((r) => r.id)).toContain(req.id)
      await expect(ops.decideTrustChange(req.id, { approved: false, note: 'not now' })).resolves.toMatchObject({
        status: 'denied',
        decidedBy: `spiffe://${TRUST_DOMAIN}/operator/alice`,
      })
    })

    it('creates enrollment tokens for operators', async () => {
      const token = await f.client(alice).createEnrollmentToken('agent-database-reader')
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    })
  })

  describe('malformed requests', () => {
    it('answers coded errors for bad bodies, unknown endpoints and oversized bodies', async () => {
      const connect = mtlsClientOptions(summarizer, { trustDomain: TRUST_DOMAIN, server: { kind: 'authority', id: f.authority.id } })
      expect(await request(f.url, connect, { path: PATHS.mint, method: 'POST', body: { audience: 7 } })).toMatchObject({
        status: 400,
        body: { error: { code: 'ERR_REQUEST_INVALID' } },
      })
      expect(await request(f.url, connect, { path: '/v1/nope', method: 'POST', body: {} })).toMatchObject({
        status: 404,
        body: { error: { code: 'ERR_REQUEST_INVALID' } },
      })
      expect(await request(f.url, connect, { path: PATHS.mint, method: 'POST', body: { pad: 'x'.repeat(70_000) } })).toMatchObject({
        status: 413,
      })
      expect(await request(f.url, connect, { path: `${PATHS.revocations}?since=-1` })).toMatchObject({ status: 400 })
    })

    it('refuses an agent without a certificate before any request is processed', async () => {
      const noCert = createAuthorityClient({
        url: f.url,
        tls: { ...summarizer, cert: undefined as never, key: undefined as never },
        timeoutMs: 2000,
      })
      try {
        await expect(noCert.mint(mintReq())).rejects.toMatchObject({ code: 'ERR_AUTHORITY_UNAVAILABLE' })
      } finally {
        await noCert.close()
      }
    })
  })

  describe('revocation', () => {
    it('quarantines an agent: its tokens die, its certificate is refused, it can mint nothing', async () => {
      const victim = await f.credentials('agent-orchestrator')
      const client = f.client(victim)
      const token = await client.mint({
        subject: 'agent-orchestrator',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
      expect(await f.client(alice).revokeAgent('agent-orchestrator')).toContain('agent-orchestrator')
      await expect(
        verifier.verify(token, { ...READ, peer: { agentId: 'agent-orchestrator', certificateThumbprint: victim.issued.thumbprint } }),
      ).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
      // On the kept-alive connection the per-request check answers 401; a new connection is closed at the handshake.
      const err = await client
        .mint({
          subject: 'agent-orchestrator',
          audience: 'agent-database-reader',
          scope: [READ_SCOPE],
          operation: 'read',
          context: CONTEXT,
        })
        .catch((e: unknown) => e)
      expect(['ERR_PEER_UNAUTHENTICATED', 'ERR_AUTHORITY_UNAVAILABLE']).toContain((err as { code: string }).code)
      const fresh = createAuthorityClient({ url: f.url, tls: victim, timeoutMs: 2000 })
      try {
        await expect(fresh.jwks()).rejects.toMatchObject({ code: 'ERR_AUTHORITY_UNAVAILABLE' })
      } finally {
        await fresh.close()
      }
      // Its descendants went with it.
      await expect(f.client(alice).listTrustChanges()).resolves.toBeInstanceOf(Array)
      expect(f.authority.agent('agent-orchestrator-child-1')?.revoked).toBe(true)
    })

    it('revokes one token by jti, and one certificate by serial', async () => {
      const token = await f.client(summarizer).mint(mintReq())
      await f.client(alice).revokeToken(claimsOf(token).jti)
      await expect(
        verifier.verify(token, { ...READ, peer: { agentId: SUMMARIZER, certificateThumbprint: summarizer.issued.thumbprint } }),
      ).rejects.toMatchObject({ code: 'ERR_TOKEN_REVOKED' })
      const leaked = await f.credentials(SUMMARIZER)
      await f.client(alice).revokeCertificate(leaked.issued.serialNumber)
      const c = createAuthorityClient({ url: f.url, tls: leaked, timeoutMs: 2000 })
      try {
        await expect(c.jwks()).rejects.toMatchObject({ code: 'ERR_AUTHORITY_UNAVAILABLE' })
      } finally {
        await c.close()
      }
      // The agent itself is fine with its other certificate.
      await expect(f.client(summarizer).mint(mintReq())).resolves.toBeTypeOf('string')
    })

    it('pages the revocation feed over mTLS: every certificate entry once, and refuses a bad limit', async () => {
      const serials = ['c0ffee01', 'c0ffee02', 'c0ffee03']
      for (const sn of serials) await f.client(alice).revokeCertificate(sn)
      const c = f.client(summarizer)
      const seen: string[] = []
      let page = await c.revocations(0, undefined, { limit: 1 })
      let pages = 1
      while (page.more) {
        for (const e of page.entries) if (e.kind === 'certificate') seen.push(e.serialNumber)
        expect(page.entries.length).toBeLessThanOrEqual(2)
        page = await c.revocations(page.cursor, page.epoch, { limit: 1, certificates: page.certificateCursor })
        pages++
      }
      for (const e of page.entries) if (e.kind === 'certificate') seen.push(e.serialNumber)
      expect(pages).toBeGreaterThan(3)
      expect(seen.filter((sn) => serials.includes(sn)).sort()).toEqual(serials)
      expect(new Set(seen).size).toBe(seen.length)
      await expect(c.revocations(0, undefined, { limit: 0 })).rejects.toMatchObject({ code: 'ERR_REQUEST_INVALID' })
      await expect(c.revocations(0, undefined, { limit: 10_001 })).rejects.toMatchObject({ code: 'ERR_REQUEST_INVALID' })
    })

    it('records refused connections and certificate issuance in the audit log, never a token', () => {
      const notes = f.audit.events.map((e) => e.note ?? '')
      expect(notes.some((n) => n.startsWith('connection refused'))).toBe(true)
      expect(notes.some((n) => n.startsWith('certificate issued'))).toBe(true)
      expect(JSON.stringify(f.audit.events)).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/)
    })

    it("records each service-level denial once, and leaves the kernel's own denials to the authority", async () => {
      const before = f.audit.events.length
      await expect(f.client(summarizer).revokeAgent('agent-database-reader')).rejects.toMatchObject({ code: 'ERR_PEER_FORBIDDEN' })
      await expect(f.client(summarizer).mint(mintReq({ scope: ['db:read:documents:namespace:user-999'] }))).rejects.toMatchObject({
        code: 'ERR_SCOPE_DENIED',
      })
      const added = f.audit.events.slice(before)
      expect(added.map((e) => [e.action, e.decision, e.code])).toEqual([
        ['revoke', 'deny', 'ERR_PEER_FORBIDDEN'],
        ['mint', 'deny', 'ERR_SCOPE_DENIED'],
      ])
      expect(added[0]).toMatchObject({ origin: SUMMARIZER, note: 'service: operator-only' })
    })
  })
})
