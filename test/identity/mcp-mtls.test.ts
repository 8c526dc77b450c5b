/**
 * MCP over Streamable HTTP with mutual TLS, end to end on loopback: the real SDK Client and
 * server transports, `serveStreamableHttp({ tls })`, `guardMcpServer`, real certificates from
 * the agent-trust CA, tokens bound to them (RFC 8705). "Refused before MCP" means that no
 * MCP server instance was created for the peer and no tool ran.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import fc from 'fast-check'
import { Agent, fetch as undiciFetch } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryAuditLog, MemoryReplayRevocationStore, type Verifier } from 'agent-trust'
import { CertificateRevocationList, mtlsClientOptions, type CertificateAuthority, type TlsCredentials } from 'agent-trust/identity'
import {
  attachPeerIdentity,
  CAPABILITY_DENIED,
  createMtlsClientTransport,
  guardMcpServer,
  mtlsPeerIdentity,
  PEER_AUTH_KEY,
  requireMtlsPeerIdentity,
  serveStreamableHttp,
  withCapabilities,
  type HttpMiddleware,
  type MtlsClientTransport,
  type StreamableHttpServer,
} from 'agent-trust/mcp'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'
import { buildMcpServer, META_KEY, type ToolLog } from '../support/mcp-world.js'
import { startService, type ServiceFixture } from '../support/authority-service.js'
import { agentCredentials, CONTEXT, craftCertificate, makeCa, MANIFEST, READ_SCOPE, TRUST_DOMAIN } from '../support/identity.js'

const DB = 'agent-database-reader'
const SUMMARIZER = 'agent-summarizer-v2'
const ORCHESTRATOR = 'agent-orchestrator'
type Creds = Awaited<ReturnType<typeof agentCredentials>>

const denied = (code: string) => ({ code: CAPABILITY_DENIED, data: { code } })
const readArgs = { name: 'read_documents', arguments: { namespace: 'user-123' } }

/** One guarded MCP server over mTLS, counting the MCP server instances it created. */
async function serve(
  verifier: Verifier,
  credentials: TlsCredentials,
  extra: { revocations?: CertificateRevocationList; audit?: MemoryAuditLog } = {},
) {
  const log: ToolLog = { calls: [] }
  let created = 0
  const http = await serveStreamableHttp(
    () => {
      created++
      return guardMcpServer(buildMcpServer(log), { verifier, manifest: MANIFEST })
    },
    { tls: { credentials, trustDomain: TRUST_DOMAIN, ...extra } },
  )
  return { http, log, created: () => created }
}

describe('MCP over mutual TLS', () => {
  let ca: CertificateAuthority
  let otherCa: CertificateAuthority
  let authority: Authority
  let revocations: CertificateRevocationList
  const tlsAudit = new MemoryAuditLog()
  let main: Awaited<ReturnType<typeof serve>>
  let strict: Awaited<ReturnType<typeof serve>>
  let summarizer: Creds
  let orchestrator: Creds
  const open: Array<{ client: Client; t?: MtlsClientTransport; dispatcher?: Agent }> = []

  beforeAll(async () => {
    ;[ca, otherCa] = await Promise.all([makeCa(), makeCa()])
    const store = new MemoryReplayRevocationStore()
    authority = await Authority.create({ manifest: MANIFEST, store })
    revocations = new CertificateRevocationList()
    const dbCreds = await agentCredentials(ca, DB)
    const verifier = createVerifier({ id: DB, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, mode: 'enforce' })
    main = await serve(verifier, dbCreds, { revocations, audit: tlsAudit })
    // The same server with requireCertificateBinding: unbound tokens are refused over mTLS.
    const strictVerifier = createVerifier({
      id: DB,
      issuers: [authority.trustedIssuer()],
      store,
      manifest: MANIFEST,
      mode: 'enforce',
      requireCertificateBinding: true,
    })
    strict = await serve(strictVerifier, dbCreds)
    ;[summarizer, orchestrator] = await Promise.all([agentCredentials(ca, SUMMARIZER), agentCredentials(ca, ORCHESTRATOR)])
  })

  afterAll(async () => {
    for (const o of open) {
      await o.client.close().catch(() => undefined)
      await o.t?.close()
      await o.dispatcher?.close()
    }
    await main.http.close()
    await strict.http.close()
  })

  /** The agent's SDK client over its own mTLS connection; wrapped with capabilities bound to its certificate unless `raw`. */
  async function agentClient(
    creds: TlsCredentials,
    options: { http?: StreamableHttpServer; raw?: boolean; bind?: boolean; issuer?: Authority | ServiceFixture['clients'][number] } = {},
  ) {
    const t = await createMtlsClientTransport((options.http ?? main.http).url, { credentials: creds, serverId: DB })
    let client = new Client({ name: t.agentId, version: '1.0.0' })
    if (options.raw !== true) {
      client = withCapabilities(client, {
        issuer: options.issuer ?? authority,
        agentId: t.agentId,
        serverId: DB,
        context: CONTEXT,
        ...(options.bind === false ? {} : { certificateThumbprint: t.certificateThumbprint }),
      })
    }
    open.push({ client, t })
    await client.connect(t.transport)
    return { client, t }
  }

  /** An SDK client whose fetch uses arbitrary TLS connect options (no certificate, a foreign one...). */
  async function connectWith(connect: object): Promise<void> {
    const dispatcher = new Agent({ connect })
    const client = new Client({ name: 'intruder', version: '1.0.0' })
    open.push({ client, dispatcher })
    const transport = new StreamableHTTPClientTransport(main.http.url, {
      fetch: ((u: string | URL, i?: RequestInit) => undiciFetch(u, { ...(i as object), dispatcher })) as unknown as typeof fetch,
    })
    await client.connect(transport)
  }

  const bound = (thumbprint: string | undefined, subject = SUMMARIZER) =>
    authority.mint({
      subject,
      audience: DB,
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
      ...(thumbprint === undefined ? {} : { certificateThumbprint: thumbprint }),
    })
  const callWith = (client: Client, token: string) => client.callTool({ ...readArgs, _meta: { [META_KEY]: token } })

  it('serves https, and lets an agent with a valid certificate and its own bound token through', async () => {
    expect(main.http.url.protocol).toBe('https:')
    const { client, t } = await agentClient(summarizer)
    expect(t).toMatchObject({ agentId: SUMMARIZER, certificateThumbprint: summarizer.issued.thumbprint })
    const before = main.log.calls.length
    const r = await client.callTool(readArgs)
    expect(r.isError).toBeFalsy()
    expect(main.log.calls.slice(before)).toEqual([{ tool: 'read_documents', args: { namespace: 'user-123' }, tokenVisible: false }])
  })

  it("binds the tokens withCapabilities mints to the connection's certificate", async () => {
    const seen: Array<string | undefined> = []
    const spy = Object.create(authority) as Authority
    spy.mintForTool = (r) => {
      seen.push(r.certificateThumbprint)
      return authority.mintForTool(r)
    }
    const { client } = await agentClient(summarizer, { issuer: spy })
    await client.callTool(readArgs)
    expect(seen).toEqual([summarizer.issued.thumbprint])
  })

  it('refuses a client without a certificate at the handshake: no MCP server is created, nothing runs', async () => {
    const created = main.created()
    const calls = main.log.calls.length
    await expect(
      connectWith(mtlsClientOptions({ ca: ca.certificatePem }, { trustDomain: TRUST_DOMAIN, server: { kind: 'agent', id: DB } })),
    ).rejects.toThrow()
    expect(main.created()).toBe(created)
    expect(main.log.calls.length).toBe(calls)
    expect(
      tlsAudit.events.some((e) => e.code === 'ERR_PEER_UNAUTHENTICATED' && e.destination === DB && e.note?.startsWith('handshake refused')),
    ).toBe(true)
  })

  it('refuses a certificate from another CA (the real client helper, foreign certificate)', async () => {
    const foreign = await agentCredentials(otherCa, SUMMARIZER)
    const created = main.created()
    await expect(agentClient({ cert: foreign.cert, key: foreign.key, ca: ca.certificatePem })).rejects.toThrow()
    expect(main.created()).toBe(created)
  })

  it('refuses a CA-signed certificate whose SAN is not a SPIFFE agent id, after the handshake and before any HTTP byte', async () => {
    const crafted = await craftCertificate(ca, { names: [{ type: 'dns', value: SUMMARIZER }] })
    const created = main.created()
    await expect(
      connectWith(mtlsClientOptions(crafted, { trustDomain: TRUST_DOMAIN, server: { kind: 'agent', id: DB } })),
    ).rejects.toThrow()
    expect(main.created()).toBe(created)
    expect(tlsAudit.events.some((e) => e.note === 'connection refused: san')).toBe(true)
  })

  it('denies a token stolen from the summarizer when the orchestrator presents it over its own mTLS connection (ERR_TOKEN_BINDING)', async () => {
    const stolen = await bound(summarizer.issued.thumbprint)
    const { client: thief } = await agentClient(orchestrator, { raw: true })
    const calls = main.log.calls.length
    await expect(callWith(thief, stolen)).rejects.toMatchObject(denied('ERR_TOKEN_BINDING'))
    expect(main.log.calls.length).toBe(calls)
    // The thief's attempt did not consume it: its rightful holder can still use it once.
    const { client: owner } = await agentClient(summarizer, { raw: true })
    await expect(callWith(owner, stolen)).resolves.toMatchObject({ content: [{ type: 'text' }] })
  })

  it('denies an unbound token of the summarizer presented by the orchestrator (the presenter must be the peer)', async () => {
    const { client: thief } = await agentClient(orchestrator, { raw: true })
    await expect(callWith(thief, await bound(undefined))).rejects.toMatchObject(denied('ERR_TOKEN_BINDING'))
  })

  it('denies the summarizer itself after a key change: a renewed certificate does not inherit tokens bound to the old one', async () => {
    const token = await bound(summarizer.issued.thumbprint)
    const { client } = await agentClient(await agentCredentials(ca, SUMMARIZER), { raw: true })
    await expect(callWith(client, token)).rejects.toMatchObject(denied('ERR_TOKEN_BINDING'))
  })

  it('allows an unbound token presented by its own agent over mTLS, unless the verifier requires certificate binding', async () => {
    const { client } = await agentClient(summarizer, { bind: false })
    await expect(client.callTool(readArgs)).resolves.toMatchObject({ content: [{ type: 'text' }] })

    const { client: strictUnbound } = await agentClient(summarizer, { http: strict.http, bind: false })
    await expect(strictUnbound.callTool(readArgs)).rejects.toMatchObject(denied('ERR_TOKEN_BINDING'))
    const { client: strictBound } = await agentClient(summarizer, { http: strict.http })
    await expect(strictBound.callTool(readArgs)).resolves.toMatchObject({ content: [{ type: 'text' }] })
  })

  it('answers a session only to the agent that opened it', async () => {
    const { t } = await agentClient(summarizer)
    const sid = t.transport.sessionId as string
    expect(sid).toEqual(expect.any(String))
    const dispatcher = new Agent({
      connect: mtlsClientOptions(orchestrator, { trustDomain: TRUST_DOMAIN, server: { kind: 'agent', id: DB } }),
    })
    try {
      const res = await undiciFetch(main.http.url, {
        dispatcher,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sid,
          'mcp-protocol-version': '2025-06-18',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'tools/call',
          params: { ...readArgs, _meta: { [META_KEY]: await bound(orchestrator.issued.thumbprint, ORCHESTRATOR) } },
        }),
      })
      expect(res.status).toBe(404)
      await res.text()
    } finally {
      await dispatcher.close()
    }
  })

  it('re-checks revocation on every request of a kept-alive connection: a revoked certificate is refused before MCP', async () => {
    const creds = await agentCredentials(ca, SUMMARIZER)
    const { client } = await agentClient(creds)
    await expect(client.callTool(readArgs)).resolves.toMatchObject({ content: [{ type: 'text' }] })
    revocations.revokeSerial(creds.issued.serialNumber, Date.now() + 3600_000)
    const calls = main.log.calls.length
    const err = await client.callTool(readArgs).then(
      () => undefined,
      (e: unknown) => e as { code?: unknown; message?: string },
    )
    expect(err).toMatchObject({ code: 401 })
    expect(err?.message).toContain('ERR_PEER_UNAUTHENTICATED')
    expect(main.log.calls.length).toBe(calls)
    expect(tlsAudit.events.some((e) => e.note === 'request refused: revoked')).toBe(true)
  })

  it('refuses to build a client transport for a plain http URL or with a fetch of its own', async () => {
    await expectOptionMisuse(() => createMtlsClientTransport('http://127.0.0.1:1/mcp', { credentials: summarizer, serverId: DB }), {
      path: 'url',
    })
    await expectOptionMisuse(
      () =>
        createMtlsClientTransport(main.http.url, {
          credentials: summarizer,
          serverId: DB,
          transportOptions: { fetch: undiciFetch } as never,
        }),
      { path: 'options.transportOptions.fetch' },
    )
  })

  it('validates its options', async () => {
    const secrets = [summarizer.key.split('\n')[1] as string]
    const t = (o: unknown) => () => createMtlsClientTransport(main.http.url, o as never)
    await expectOptionMisuse(t({ credentials: { ...summarizer, key: 'x' }, serverId: DB }), { path: 'options.credentials.key', secrets })
    await expectOptionMisuse(t({ credentials: summarizer }), { path: 'options.serverId', secrets })
    await expectOptionMisuse(t({ credentials: summarizer, serverId: DB, sdkMajor: 3 }), { path: 'options.sdkMajor', secrets })
    await expectOptionMisuse(t({ credentials: summarizer, serverId: DB, connectTimeout: 5 }), { path: 'options.connectTimeout', secrets })
    await expectOptionMisuse(t({ credentials: summarizer, serverId: DB, [HOSTILE_KEY]: 1 }), {
      path: `options${HOSTILE_KEY_PATH}`,
      secrets,
    })
  })

  it('refuses server credentials that are not an agent-trust certificate, and a renewal naming another server', async () => {
    const crafted = await craftCertificate(ca, { names: [{ type: 'dns', value: DB }] })
    await expectOptionMisuse(
      () => serveStreamableHttp(() => buildMcpServer(), { tls: { credentials: crafted, trustDomain: TRUST_DOMAIN } }),
      {
        path: 'options.tls.credentials.cert',
        secrets: [crafted.key.split('\n')[1] as string],
      },
    )
    await expectOptionMisuse(() => createMtlsClientTransport(main.http.url, { credentials: crafted, serverId: DB }), {
      path: 'options.credentials.cert',
    })
    await expectOptionMisuse(() => main.http.updateCredentials(summarizer), { path: 'credentials.cert' })
    await expectOptionMisuse(() => main.http.updateCredentials({ ...summarizer, cert: 'x' }), { path: 'credentials.cert' })
    // The same server, renewed: accepted, and new connections are served with it.
    main.http.updateCredentials(await agentCredentials(ca, DB))
    const { client } = await agentClient(summarizer)
    await expect(client.callTool(readArgs)).resolves.toMatchObject({ content: [{ type: 'text' }] })
  })
})

describe('MCP over mutual TLS with the authority as a service', () => {
  let f: ServiceFixture
  let http: StreamableHttpServer
  const log: ToolLog = { calls: [] }
  const clients: Client[] = []
  const transports: MtlsClientTransport[] = []

  beforeAll(async () => {
    f = await startService()
    const verifier = createVerifier({ id: DB, issuers: [f.authority.trustedIssuer()], store: f.feed, manifest: MANIFEST, mode: 'enforce' })
    http = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(log), { verifier, manifest: MANIFEST }), {
      tls: { credentials: await f.credentials(DB) },
    })
  })
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()))
    await Promise.allSettled(transports.map((t) => t.close()))
    await http.close()
    await f.close()
  })

  async function connect(creds: TlsCredentials, certificateThumbprint?: string): Promise<Client> {
    const t = await createMtlsClientTransport(http.url, { credentials: creds, serverId: DB })
    transports.push(t)
    const client = withCapabilities(new Client({ name: t.agentId, version: '1.0.0' }), {
      issuer: f.client(creds),
      agentId: t.agentId,
      serverId: DB,
      context: CONTEXT,
      ...(certificateThumbprint === undefined ? {} : { certificateThumbprint }),
    })
    clients.push(client)
    await client.connect(t.transport)
    return client
  }

  it("the remote authority binds tokens to the calling agent's certificate: the call goes through", async () => {
    const summarizer = await f.credentials(SUMMARIZER)
    // No thumbprint given: the service binds to the certificate of the caller by itself.
    const client = await connect(summarizer)
    await expect(client.callTool(readArgs)).resolves.toMatchObject({ content: [{ type: 'text' }] })
    expect(log.calls.at(-1)).toMatchObject({ tool: 'read_documents' })
  })

  it("a token the service minted for the summarizer is useless on the orchestrator's connection", async () => {
    const summarizer = await f.credentials(SUMMARIZER)
    const orchestrator = await f.credentials(ORCHESTRATOR)
    const { token } = await f
      .client(summarizer)
      .mintForTool({ subject: SUMMARIZER, audience: DB, tool: 'read_documents', args: { namespace: 'user-123' }, context: CONTEXT })
    const t = await createMtlsClientTransport(http.url, { credentials: orchestrator, serverId: DB })
    transports.push(t)
    const thief = new Client({ name: 'thief', version: '1.0.0' })
    clients.push(thief)
    await thief.connect(t.transport)
    await expect(callWithToken(thief, token)).rejects.toMatchObject(denied('ERR_TOKEN_BINDING'))
  })

  it("an agent cannot have the service bind a token to another agent's certificate", async () => {
    const summarizer = await f.credentials(SUMMARIZER)
    const orchestrator = await f.credentials(ORCHESTRATOR)
    const client = await connect(orchestrator, summarizer.issued.thumbprint)
    await expect(client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })).rejects.toMatchObject({
      code: 'ERR_TOKEN_BINDING',
    })
  })

  function callWithToken(client: Client, token: string) {
    return client.callTool({ ...readArgs, _meta: { [META_KEY]: token } })
  }
})

describe('the peer channel between the host and the guard', () => {
  it('a peer is read only when the host attached it: data that merely looks like one is ignored', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const extra = { authInfo: { token: 't', clientId: 'c', scopes: [], extra: { [PEER_AUTH_KEY]: value } } }
        expect(mtlsPeerIdentity(extra)).toBeUndefined()
        expect(() => requireMtlsPeerIdentity(extra)).toThrow(expect.objectContaining({ code: 'ERR_PEER_UNAUTHENTICATED' }))
      }),
      { numRuns: 200 },
    )
    const req = { auth: { token: 'oauth', clientId: 'desktop', scopes: ['x'] } } as never
    attachPeerIdentity(req, { agentId: SUMMARIZER, certificateThumbprint: 'abc' })
    const auth = (req as { auth: { token: string; extra: Record<string, unknown> } }).auth
    expect(auth.token).toBe('oauth') // an OAuth middleware's authInfo is kept
    expect(mtlsPeerIdentity({ authInfo: auth as never })).toMatchObject({ agentId: SUMMARIZER, certificateThumbprint: 'abc' })
    // A JSON round trip (what any data path does) loses the brand.
    expect(mtlsPeerIdentity({ authInfo: JSON.parse(JSON.stringify(auth)) })).toBeUndefined()
  })

  it('over plain HTTP, a middleware-forged peer is ignored and requireMtlsPeerIdentity denies every call', async () => {
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest: MANIFEST, store })
    const verifier = createVerifier({ id: DB, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, mode: 'enforce' })
    const forge: HttpMiddleware = (req, _res, next) => {
      ;(req as { auth?: unknown }).auth = {
        token: '',
        clientId: SUMMARIZER,
        scopes: [],
        extra: { [PEER_AUTH_KEY]: { agentId: SUMMARIZER } },
      }
      next()
    }
    const log: ToolLog = { calls: [] }
    const http = await serveStreamableHttp(
      () => guardMcpServer(buildMcpServer(log), { verifier, manifest: MANIFEST, peerIdentity: requireMtlsPeerIdentity }),
      { middleware: forge },
    )
    const client = new Client({ name: 'plain', version: '1.0.0' })
    try {
      await client.connect(new StreamableHTTPClientTransport(http.url))
      const token = await authority.mint({ subject: SUMMARIZER, audience: DB, scope: [READ_SCOPE], operation: 'read', context: CONTEXT })
      await expect(client.callTool({ ...readArgs, _meta: { [META_KEY]: token } })).rejects.toMatchObject(denied('ERR_PEER_UNAUTHENTICATED'))
      expect(log.calls).toEqual([])
    } finally {
      await client.close()
      await http.close()
    }
  })
})
