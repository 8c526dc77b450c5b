/**
 * Agent-to-agent HTTP over mutual TLS, end to end on loopback: the egress client
 * (`createAgentCallDispatcher({ tls: mtlsAgentCall(...) })`, real undici) and the server
 * helper (`createAgentCallGuard({ peerIdentity: createPeerIdentity(...) })` on a real
 * `node:https` server). "Refused before the handler" means the agent's handler never ran.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectOptionMisuse } from '../support/options.js'
import { Authority, createVerifier, MemoryAuditLog, MemoryReplayRevocationStore, type Verifier } from 'agent-trust'
import { createAgentCallDispatcher, createAgentCallGuard } from 'agent-trust/egress'
import {
  certificateThumbprint,
  CertificateRevocationList,
  createPeerIdentity,
  mtlsAgentCall,
  mtlsClientOptions,
  type CertificateAuthority,
  type PeerValidationOptions,
  type TlsCredentials,
} from 'agent-trust/identity'
import { startService, type ServiceFixture } from '../support/authority-service.js'
import {
  agentCredentials,
  CONTEXT,
  craftCertificate,
  makeCa,
  MANIFEST,
  request,
  startMtlsServer,
  TRUST_DOMAIN,
  type TestServer,
} from '../support/identity.js'

const DB = 'agent-database-reader'
const SUMMARIZER = 'agent-summarizer-v2'
const ORCHESTRATOR = 'agent-orchestrator'
const SCOPE = 'db:read:documents:namespace:user-123'
type Creds = Awaited<ReturnType<typeof agentCredentials>>

/** The database reader's endpoint: every GET needs `SCOPE` (read); the handler reports who called and whether the token was bound. */
async function startAgent(
  verifier: Verifier,
  credentials: TlsCredentials,
  validation: PeerValidationOptions,
  options: { guardTls?: boolean } = {},
) {
  let ran = 0
  const guard = createAgentCallGuard({
    verifier,
    peerIdentity: createPeerIdentity(validation),
    requirement: () => ({ scope: SCOPE, operation: 'read' }),
  })
  const handler = guard.node((_req: IncomingMessage, res: ServerResponse, capability) => {
    ran++
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ presenter: capability?.presenter, bound: capability?.claims.cnf?.['x5t#S256'] }))
  })
  const server = await startMtlsServer(credentials, handler, options.guardTls === false ? undefined : validation)
  return { server, ran: () => ran }
}

describe('agent-to-agent HTTP over mutual TLS', () => {
  let ca: CertificateAuthority
  let otherCa: CertificateAuthority
  let authority: Authority
  let revocations: CertificateRevocationList
  const audit = new MemoryAuditLog()
  let db: Awaited<ReturnType<typeof startAgent>>
  let strict: Awaited<ReturnType<typeof startAgent>>
  /** No guardTlsServer: only the per-request hook stands between a bad certificate and the handler. */
  let hookOnly: Awaited<ReturnType<typeof startAgent>>
  let summarizer: Creds
  let orchestrator: Creds
  const dispatchers: Array<{ close(): Promise<void> }> = []

  beforeAll(async () => {
    ;[ca, otherCa] = await Promise.all([makeCa(), makeCa()])
    const store = new MemoryReplayRevocationStore()
    authority = await Authority.create({ manifest: MANIFEST, store })
    revocations = new CertificateRevocationList()
    const validation = { trustDomain: TRUST_DOMAIN, revocations, ca: ca.certificatePem }
    const dbCreds = await agentCredentials(ca, DB)
    const verifier = createVerifier({ id: DB, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, audit, mode: 'enforce' })
    const strictVerifier = createVerifier({
      id: DB,
      issuers: [authority.trustedIssuer()],
      store,
      manifest: MANIFEST,
      mode: 'enforce',
      requireCertificateBinding: true,
    })
    ;[db, strict, hookOnly] = await Promise.all([
      startAgent(verifier, dbCreds, validation),
      startAgent(strictVerifier, dbCreds, validation),
      startAgent(verifier, dbCreds, validation, { guardTls: false }),
    ])
    ;[summarizer, orchestrator] = await Promise.all([agentCredentials(ca, SUMMARIZER), agentCredentials(ca, ORCHESTRATOR)])
  })
  afterAll(async () => {
    await Promise.allSettled(dispatchers.map((d) => d.close()))
    await Promise.all([db.server.close(), strict.server.close(), hookOnly.server.close()])
  })

  /** The egress client of `subject`, calling the database reader at `server` over mTLS with `creds`. */
  function caller(
    creds: TlsCredentials,
    server: TestServer,
    options: { subject?: string; bind?: boolean; issuer?: Authority | ReturnType<ServiceFixture['client']> } = {},
  ) {
    const tls = mtlsAgentCall(creds)
    const dispatcher = createAgentCallDispatcher({
      issuer: options.issuer ?? authority,
      subject: options.subject ?? SUMMARIZER,
      targets: [{ agentId: DB, origin: server.url }],
      context: CONTEXT,
      capability: () => ({ scope: [SCOPE], operation: 'read' }),
      // bind: false keeps the client certificate but mints unbound tokens.
      tls: options.bind === false ? { connect: (t) => tls.connect(t) } : tls,
    })
    dispatchers.push(dispatcher)
    return async (): Promise<{ status: number; body: any }> => {
      const res = await dispatcher.request({ origin: server.url, path: '/documents', method: 'GET', signal: AbortSignal.timeout(5000) })
      return { status: res.statusCode, body: await res.body.json() }
    }
  }

  /** A raw mTLS request (no interceptor) with a token of our choosing: a thief's view. */
  const present = (creds: TlsCredentials, token: string, server: TestServer = db.server) =>
    request(server.url, mtlsClientOptions(creds, { trustDomain: TRUST_DOMAIN, server: { kind: 'agent', id: DB } }), {
      path: '/documents',
      headers: { 'agent-capability': token },
    })
  const mint = (subject: string, thumbprint?: string) =>
    authority.mint({
      subject,
      audience: DB,
      scope: [SCOPE],
      operation: 'read',
      context: CONTEXT,
      ...(thumbprint === undefined ? {} : { certificateThumbprint: thumbprint }),
    })

  it('an agent with a valid certificate gets through with a fresh token bound to that certificate', async () => {
    const call = caller(summarizer, db.server)
    expect(await call()).toEqual({ status: 200, body: { presenter: SUMMARIZER, bound: summarizer.issued.thumbprint } })
    // A second hop, a second token (single use): still allowed.
    expect((await call()).status).toBe(200)
    expect(mtlsAgentCall(summarizer).certificateThumbprint()).toBe(certificateThumbprint(summarizer.cert))
  })

  it('refuses a client without a certificate at the handshake: the handler never runs', async () => {
    const ran = db.ran()
    const noCert = {
      connect: () => mtlsClientOptions({ ca: ca.certificatePem }, { trustDomain: TRUST_DOMAIN, server: { kind: 'agent', id: DB } }),
    }
    const dispatcher = createAgentCallDispatcher({
      issuer: authority,
      subject: SUMMARIZER,
      targets: [{ agentId: DB, origin: db.server.url }],
      context: CONTEXT,
      tls: noCert,
    })
    dispatchers.push(dispatcher)
    await expect(dispatcher.request({ origin: db.server.url, path: '/', method: 'GET' })).rejects.toThrow()
    expect(db.ran()).toBe(ran)
  })

  it('refuses a certificate from another CA: the handler never runs', async () => {
    const foreign = await agentCredentials(otherCa, SUMMARIZER)
    const ran = db.ran()
    await expect(caller({ cert: foreign.cert, key: foreign.key, ca: ca.certificatePem }, db.server)()).rejects.toThrow()
    expect(db.ran()).toBe(ran)
  })

  it('denies a token stolen from the summarizer when the orchestrator presents it over its own mTLS connection (ERR_TOKEN_BINDING)', async () => {
    const stolen = await mint(SUMMARIZER, summarizer.issued.thumbprint)
    const ran = db.ran()
    expect(await present(orchestrator, stolen)).toMatchObject({ status: 401, body: { error: { code: 'ERR_TOKEN_BINDING' } } })
    expect(db.ran()).toBe(ran)
    // Not consumed by the failed attempt: its holder can still use it once.
    expect(await present(summarizer, stolen)).toMatchObject({ status: 200, body: { presenter: SUMMARIZER } })
  })

  it('denies an unbound token of the summarizer presented by the orchestrator, and a token bound to an older key of the summarizer', async () => {
    expect(await present(orchestrator, await mint(SUMMARIZER))).toMatchObject({
      status: 401,
      body: { error: { code: 'ERR_TOKEN_BINDING' } },
    })
    const old = await mint(SUMMARIZER, summarizer.issued.thumbprint)
    expect(await present(await agentCredentials(ca, SUMMARIZER), old)).toMatchObject({
      status: 401,
      body: { error: { code: 'ERR_TOKEN_BINDING' } },
    })
  })

  it('allows an unbound token presented by its own agent over mTLS, unless the verifier requires certificate binding', async () => {
    expect(await caller(summarizer, db.server, { bind: false })()).toEqual({ status: 200, body: { presenter: SUMMARIZER } })
    expect(await caller(summarizer, strict.server, { bind: false })()).toMatchObject({
      status: 401,
      body: { error: { code: 'ERR_TOKEN_BINDING' } },
    })
    expect(await caller(summarizer, strict.server)()).toMatchObject({
      status: 200,
      body: { presenter: SUMMARIZER, bound: summarizer.issued.thumbprint },
    })
  })

  it('without guardTlsServer, the peer hook still refuses a CA-signed certificate that is not a SPIFFE agent id (401, audited) and an operator certificate (403)', async () => {
    const crafted = await craftCertificate(ca, { names: [{ type: 'dns', value: SUMMARIZER }] })
    const ran = hookOnly.ran()
    const r = await present(crafted, await mint(SUMMARIZER), hookOnly.server)
    expect(r).toMatchObject({ status: 401, body: { error: { code: 'ERR_PEER_UNAUTHENTICATED' } } })
    expect(hookOnly.ran()).toBe(ran)
    expect(
      audit.events.some((e) => e.action === 'agent_call' && e.code === 'ERR_PEER_UNAUTHENTICATED' && e.note === 'peer refused: san'),
    ).toBe(true)
    // A valid certificate of another kind (an operator's) may not call an agent endpoint.
    const operator = await ca.issueLocal({ kind: 'operator', id: 'alice' })
    expect(await present(operator, await mint(SUMMARIZER), hookOnly.server)).toMatchObject({
      status: 403,
      body: { error: { code: 'ERR_PEER_FORBIDDEN' } },
    })
    expect(hookOnly.ran()).toBe(ran)
  })

  it('re-checks revocation per request: a kept-alive connection of a revoked certificate is refused (401 ERR_PEER_UNAUTHENTICATED)', async () => {
    const creds = await agentCredentials(ca, SUMMARIZER)
    const call = caller(creds, hookOnly.server)
    expect((await call()).status).toBe(200)
    revocations.revokeSerial(creds.issued.serialNumber, Date.now() + 3600_000)
    const ran = hookOnly.ran()
    expect(await call()).toMatchObject({ status: 401, body: { error: { code: 'ERR_PEER_UNAUTHENTICATED' } } })
    expect(hookOnly.ran()).toBe(ran)
  })

  it("the client accepts only the target agent's certificate: an impostor on the target's origin never sees a token", async () => {
    let seen = 0
    const impostor = await startMtlsServer(await agentCredentials(ca, ORCHESTRATOR), (req, res) => {
      if (req.headers['agent-capability'] !== undefined) seen++
      res.end('{}')
    })
    try {
      await expect(caller(summarizer, impostor)()).rejects.toThrow()
      expect(seen).toBe(0)
    } finally {
      await impostor.close()
    }
  })

  it("uses the agent's certificate only for registered agent origins; other origins get plain TLS with the public roots", async () => {
    const other = await startMtlsServer(await agentCredentials(ca, 'agent-other'), (_q, s) => void s.end('{}'))
    const mtls = mtlsAgentCall(summarizer)
    const asked: string[] = []
    const tls = {
      connect: (t: { agentId: string }) => (asked.push(t.agentId), mtls.connect(t)),
      certificateThumbprint: mtls.certificateThumbprint,
    }
    const dispatcher = createAgentCallDispatcher({
      issuer: authority,
      subject: SUMMARIZER,
      targets: [{ agentId: DB, origin: db.server.url }],
      context: CONTEXT,
      capability: () => ({ scope: [SCOPE], operation: 'read' }),
      tls,
    })
    dispatchers.push(dispatcher)
    try {
      // Our CA is not a public root, so the unregistered server is not trusted either.
      await expect(dispatcher.request({ origin: other.url, path: '/', method: 'GET' })).rejects.toThrow()
      expect(other.handled()).toBe(0)
      expect(asked).toEqual([])
      const res = await dispatcher.request({ origin: db.server.url, path: '/', method: 'GET' })
      expect(await res.body.json()).toEqual({ presenter: SUMMARIZER, bound: summarizer.issued.thumbprint })
      expect(asked).toEqual([DB])
    } finally {
      await other.close()
    }
  })

  it('refuses to start with plain http agent origins, or with both tls and agentOptions.connect', async () => {
    const tls = mtlsAgentCall(summarizer)
    const base = { issuer: authority, subject: SUMMARIZER, context: CONTEXT, tls }
    await expectOptionMisuse(() => createAgentCallDispatcher({ ...base, targets: [{ agentId: DB, origin: 'http://127.0.0.1:8080' }] }), {
      path: 'targets[0].origin',
    })
    await expectOptionMisuse(
      () => createAgentCallDispatcher({ ...base, targets: [{ agentId: DB, origin: db.server.url }], agentOptions: { connect: {} } }),
      { path: 'agentOptions.connect' },
    )
  })
})

describe('agent-to-agent HTTP over mutual TLS with the authority as a service', () => {
  let f: ServiceFixture
  let db: Awaited<ReturnType<typeof startAgent>>

  beforeAll(async () => {
    f = await startService()
    const verifier = createVerifier({ id: DB, issuers: [f.authority.trustedIssuer()], store: f.feed, manifest: MANIFEST, mode: 'enforce' })
    db = await startAgent(verifier, await f.credentials(DB), { trustDomain: TRUST_DOMAIN, ca: f.ca.certificatePem })
  })
  afterAll(async () => {
    await db.server.close()
    await f.close()
  })

  it("the remote authority binds each hop's token to the caller's certificate; another agent cannot use it", async () => {
    const summarizer = await f.credentials(SUMMARIZER)
    const orchestrator = await f.credentials(ORCHESTRATOR)
    const dispatcher = createAgentCallDispatcher({
      issuer: f.client(summarizer),
      subject: SUMMARIZER,
      targets: [{ agentId: DB, origin: db.server.url }],
      context: CONTEXT,
      capability: () => ({ scope: [SCOPE], operation: 'read' }),
      tls: mtlsAgentCall(summarizer),
    })
    const res = await dispatcher.request({ origin: db.server.url, path: '/', method: 'GET' })
    expect({ status: res.statusCode, body: await res.body.json() }).toEqual({
      status: 200,
      body: { presenter: SUMMARIZER, bound: summarizer.issued.thumbprint },
    })
    await dispatcher.close()

    const stolen = await f
      .client(summarizer)
      .mint({ subject: SUMMARIZER, audience: DB, scope: [SCOPE], operation: 'read', context: CONTEXT })
    const r = await request(
      db.server.url,
      mtlsClientOptions(orchestrator, { trustDomain: TRUST_DOMAIN, server: { kind: 'agent', id: DB } }),
      { headers: { 'agent-capability': stolen } },
    )
    expect(r).toMatchObject({ status: 401, body: { error: { code: 'ERR_TOKEN_BINDING' } } })
  })
})
