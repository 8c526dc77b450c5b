/**
 * A minimal Streamable HTTP host for guarded MCP servers (used by the gateway command, the
 * examples, the tests and the bench): one `node:http` server (or `node:https` with mutual
 * TLS), one MCP session per client, each session its own server instance from
 * `createServer()` (an SDK server object serves one transport). Loopback by default, with
 * the SDK's DNS-rebinding Host check on.
 *
 * Subpath: `agent-trust/mcp`.
 */
import { randomUUID, X509Certificate } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { McpServer as McpServerV2, Server as ServerV2 } from '@modelcontextprotocol/server'
import type * as NodeTransportModule from '@modelcontextprotocol/node'
import type * as StreamableHttpModule from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { peerRefused, toAgentTrustError } from '#internal'
import { AgentTrustError, ConfigInvalid, ERROR_CATALOG } from 'agent-trust'
import type { AgentTrustErrorCode, AuditLog, PeerIdentity } from 'agent-trust'
import { denialAnswer } from 'agent-trust/http'
import type { CertificateRevocationChecker, TlsCredentials } from '#internal'
import { attachPeerIdentity, attachSessionProof } from './peer.js'
import { CAPABILITY_DENIED, CAPABILITY_META_KEY } from './policy.js'
import { isV2Server } from './server-v2.js'

/** Connect-style middleware, e.g. the SDK's `requireBearerAuth` for the server's own OAuth. */
export type HttpMiddleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void | Promise<void>

export interface ServeStreamableHttpOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  readonly host?: string
  /** Port; `0` (default) picks a free one. */
  readonly port?: number
  /** The MCP endpoint path. Default `/mcp`. */
  readonly path?: string
  /**
   * At most this many open sessions. When full, the oldest session that never carried a valid
   * capability is ended to make room; only when every session has carried one do new
   * sessions get HTTP 503. Default 1000.
   */
  readonly maxSessions?: number
  /**
   * At most this many sessions that have not (yet) carried a valid capability per peer (the
   * mTLS agent id, else the remote address); opening one more ends that peer's oldest.
   * `initialize` carries no token, so this is what stops a token-less flood. Default 16.
   */
  readonly maxTokenlessSessionsPerPeer?: number
  /** A session that has not carried a valid capability ends after this long idle, ms. Default 30000 (30 s). */
  readonly tokenlessIdleMs?: number
  /** Any session ends after this long idle, ms. Default 1800000 (30 min). */
  readonly idleMs?: number
  /** Largest accepted request body, bytes. Default 4 MiB. */
  readonly maxBodyBytes?: number
  /** Answer with JSON instead of an SSE stream when a request needs no streaming. Default false (SDK default). */
  readonly enableJsonResponse?: boolean
  /**
   * Runs before the MCP transport on every request (for example `requireBearerAuth` from
   * `@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js`: the server's own OAuth
   * stays in `Authorization`, agent-trust capabilities travel in `_meta`).
   */
  readonly middleware?: HttpMiddleware
  /**
   * Serve HTTPS with mutual TLS (needs `@peculiar/x509`; see `agent-trust/identity`). A peer
   * without a valid, unrevoked certificate from the trust domain is refused before any
   * MCP message is read; each request's peer reaches `guardMcpServer`'s verifier, which then
   * requires the token's presenter to be that agent and a bound token to match its
   * certificate (`ERR_TOKEN_BINDING`); a session answers only the agent that opened it.
   */
  readonly tls?: StreamableHttpTlsOptions
  /**
   * What the RFC 9728 protected-resource metadata document says (served at
   * `/.well-known/oauth-protected-resource` and `/.well-known/oauth-protected-resource<path>`,
   * and named by every `WWW-Authenticate` challenge's `resource_metadata`).
   */
  readonly resourceMetadata?: ProtectedResourceMetadataOptions
  /**
   * Answer a guard denial of a request whose capability is not in `params._meta` (none at
   * all, or the `Agent-Trust-Capability` header) with the authorization specification's
   * HTTP signals: 401 `invalid_token`, 403 `insufficient_scope` with `scope`, 503 with
   * `Retry-After`, each with `resource_metadata`; the body is the same JSON-RPC error.
   * A capability sent in `params._meta` (what `withCapabilities` does) is a JSON-RPC-level
   * credential: its denial stays a JSON-RPC error on HTTP 200, so SDK clients read
   * `data.code` as on every other transport. Default `true`.
   */
  readonly httpSignals?: boolean
}

/** The RFC 9728 document of a {@link serveStreamableHttp} endpoint. */
export interface ProtectedResourceMetadataOptions {
  /** The resource identifier. Default: the endpoint URL (set it behind a reverse proxy). */
  readonly resource?: string
  /** The issuing authorities' URLs (an authority service's base URL): `authorization_servers`. */
  readonly authorizationServers?: readonly string[]
  /** Where the authorities' signing keys are (`/.well-known/jwks.json` of the authority service): `jwks_uri`. */
  readonly jwksUri?: string
  /** The scopes this server's tools need (`scopes_supported`), e.g. the templates `tools/list` advertises. */
  readonly scopesSupported?: readonly string[]
  /** A human-readable name (`resource_name`). */
  readonly resourceName?: string
  /** The challenge's `realm` (this server's agent id). Default: none. */
  readonly realm?: string
}

/** Mutual TLS for {@link serveStreamableHttp}. */
export interface StreamableHttpTlsOptions {
  /**
   * This server's certificate and key (an X.509-SVID naming it, e.g. `identity.credentials`
   * or `ca.issueLocal({ kind: 'agent', id })`) and the CA bundle clients must chain to.
   */
  readonly credentials: TlsCredentials
  /** Only client certificates of this trust domain. Default: the CA certificate's (`spiffe://<domain>`). */
  readonly trustDomain?: string
  /** Revoked certificates and identities (the authority's list or a feed-fed copy): checked after the handshake and again on every request. */
  readonly revocations?: CertificateRevocationChecker
  /**
   * Where refused connections and requests are recorded (`tool_call`, `deny`, the
   * `ERR_PEER_*` code, rule in `note`). MCP decisions are recorded by the guard.
   */
  readonly audit?: AuditLog
  /** Clock, epoch ms (tests). */
  readonly now?: () => number
}

export interface StreamableHttpServer {
  /** The endpoint, e.g. `http://127.0.0.1:54321/mcp` (`https:` with `tls`). */
  readonly url: URL
  /** Open sessions. */
  readonly sessions: number
  /**
   * Serve a renewed certificate from now on (`identity.onChange((c) => http.updateCredentials(c))`);
   * it must name the same server. Throws `TypeError` without `tls`.
   */
  updateCredentials(credentials: TlsCredentials): void
  close(): Promise<void>
}

/** What the request path needs from the TLS set-up. */
interface TlsContext {
  readonly server: HttpsServer
  /** The request's peer; throws a coded error (expired or revoked since the handshake, ...). */
  readonly peer: (req: IncomingMessage) => PeerIdentity
  readonly refuse: (error: AgentTrustError, stage: 'connection' | 'request') => void
  readonly update: (credentials: TlsCredentials) => void
}

type AnyServer = McpServer | Server | McpServerV2 | ServerV2
/** What the host needs of a Streamable HTTP server transport: SDK 1.x's, or `@modelcontextprotocol/node`'s for SDK 2.x. */
interface HostedTransport {
  readonly sessionId?: string | undefined
  onclose?: (() => void) | undefined
  handleRequest(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown): Promise<void>
}
type TransportOptions = ConstructorParameters<typeof StreamableHTTPServerTransport>[0]

/**
 * The transport for `server`'s SDK: SDK 2.x servers get `NodeStreamableHTTPServerTransport`
 * from `@modelcontextprotocol/node` (same options, same `handleRequest(req, res, body)`;
 * `req.auth` becomes the handler's `ctx.http.authInfo`).
 */
async function transportFor(server: AnyServer, options: TransportOptions): Promise<HostedTransport> {
  if (!isV2Server(server)) {
    // Loaded on first use, so that an application on SDK 2.x alone needs no SDK 1.x installed.
    let v1: typeof StreamableHttpModule
    try {
      v1 = await import('@modelcontextprotocol/sdk/server/streamableHttp.js')
    } catch {
      throw new ConfigInvalid('serveStreamableHttp: an MCP SDK 1.x server needs the package @modelcontextprotocol/sdk; install it', {
        details: { rule: 'sdk-transport' },
      })
    }
    return new v1.StreamableHTTPServerTransport(options)
  }
  let node: typeof NodeTransportModule
  try {
    node = await import('@modelcontextprotocol/node')
  } catch {
    throw new ConfigInvalid('serveStreamableHttp: an MCP SDK 2.x server needs the package @modelcontextprotocol/node; install it', {
      details: { rule: 'sdk-transport' },
    })
  }
  return new node.NodeStreamableHTTPServerTransport(options)
}

interface Session {
  readonly transport: HostedTransport
  readonly server: AnyServer
  /** Over mTLS: the agent that opened the session, the only one it answers. */
  readonly owner: string | undefined
  /** Who opened it: `mtls:<agent id>` or `addr:<remote address>`; the only peer it answers. */
  readonly peer: string
  /** True once a request in it was allowed on a verified capability. */
  proven: boolean
  lastSeen: number
}

function boundedInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new TypeError(`serveStreamableHttp: ${name} must be an integer from ${min} to ${max}`)
  return v
}

/**
 * Serve MCP over Streamable HTTP. `createServer` is called once per session; guard what it
 * returns (`guardMcpServer`) and share one verifier across sessions so replay and revocation
 * state is common.
 *
 * @example
 * ```ts
 * const verifier = createVerifier({ id: 'agent-database-reader', issuers, store })
 * const http = await serveStreamableHttp(() => guardMcpServer(buildServer(), { verifier, manifest }))
 * console.log(http.url.href)
 * // over mutual TLS (the guard then checks each token's presenter and certificate binding):
 * const https = await serveStreamableHttp(() => guardMcpServer(buildServer(), { verifier, manifest }), { tls: { credentials: identity.credentials } })
 * ```
 */
export async function serveStreamableHttp(
  createServer: () => AnyServer | Promise<AnyServer>,
  options: ServeStreamableHttpOptions = {},
): Promise<StreamableHttpServer> {
  const {
    host = '127.0.0.1',
    port = 0,
    path = '/mcp',
    maxSessions = 1000,
    maxBodyBytes = 4 * 1024 * 1024,
    enableJsonResponse = false,
    middleware,
    tls,
    maxTokenlessSessionsPerPeer = 16,
    tokenlessIdleMs = 30_000,
    idleMs = 1_800_000,
    resourceMetadata = {},
    httpSignals = true,
  } = options
  if (typeof createServer !== 'function') throw new TypeError('serveStreamableHttp: createServer must be a function')
  if (!path.startsWith('/')) throw new TypeError('serveStreamableHttp: path must start with "/"')
  boundedInt('maxSessions', maxSessions, 1, 1_000_000)
  boundedInt('maxTokenlessSessionsPerPeer', maxTokenlessSessionsPerPeer, 1, 1_000_000)
  boundedInt('tokenlessIdleMs', tokenlessIdleMs, 100, 86_400_000)
  boundedInt('idleMs', idleMs, 100, 7 * 86_400_000)
  const sessions = new Map<string, Session>()
  /** Per peer, its sessions that have not carried a valid capability, oldest first. */
  const tokenless = new Map<string, Set<string>>()

  const forget = (id: string): void => {
    const s = sessions.get(id)
    if (s === undefined) return
    sessions.delete(id)
    const set = tokenless.get(s.peer)
    if (set !== undefined) {
      set.delete(id)
      if (set.size === 0) tokenless.delete(s.peer)
    }
  }
  const end = (id: string): void => {
    const s = sessions.get(id)
    if (s === undefined) return
    forget(id)
    void Promise.resolve()
      .then(() => s.server.close())
      .catch(() => undefined)
  }
  const prove = (id: string): void => {
    const s = sessions.get(id)
    if (s === undefined || s.proven) return
    s.proven = true
    const set = tokenless.get(s.peer)
    set?.delete(id)
    if (set !== undefined && set.size === 0) tokenless.delete(s.peer)
  }
  /** The oldest token-less session of anyone (Map order is insertion order). */
  const oldestTokenless = (): string | undefined => {
    for (const [id, s] of sessions) if (!s.proven) return id
    return undefined
  }
  const sweep = (): void => {
    const now = Date.now()
    for (const [id, s] of sessions) {
      if (now - s.lastSeen > (s.proven ? idleMs : tokenlessIdleMs)) end(id)
    }
  }
  const sweeper = setInterval(sweep, Math.max(50, Math.min(tokenlessIdleMs, idleMs) / 2))
  sweeper.unref()
  let allowedHosts: string[] = []
  // Both set once the port is known.
  let metadataUrl = ''
  let metadataBody = ''
  const metadataPaths = new Set(['/.well-known/oauth-protected-resource', `/.well-known/oauth-protected-resource${path}`])

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(rpcError(-32603, 'Internal error'))
      else res.end()
    })
  }
  const tlsContext = tls === undefined ? undefined : await setUpTls(tls, listener)
  const http: HttpServer | HttpsServer = tlsContext?.server ?? createHttpServer(listener)

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // First of all, on every request (a kept-alive connection outlives its certificate and its
    // revocation): no MCP byte of an unauthenticated peer is read.
    let peer: PeerIdentity | undefined
    if (tlsContext !== undefined) {
      try {
        peer = tlsContext.peer(req)
      } catch (e) {
        const err = toAgentTrustError(e)
        tlsContext.refuse(err, 'request')
        const answer = denialAnswer(err, { body: rpcDenied(err), resourceMetadata: metadataUrl, realm: resourceMetadata.realm })
        res.writeHead(answer.status, { ...answer.headers, connection: 'close' }).end(answer.body)
        return
      }
    }
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (metadataPaths.has(url.pathname) && (req.method === 'GET' || req.method === 'HEAD')) {
      res
        .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' })
        .end(req.method === 'HEAD' ? undefined : metadataBody)
      return
    }
    if (url.pathname !== path) {
      res.writeHead(404).end()
      return
    }
    if (middleware !== undefined && !(await runMiddleware(middleware, req, res))) return
    // After the middleware, so an OAuth middleware's req.auth is kept and the peer added to it.
    if (peer !== undefined) attachPeerIdentity(req, peer)
    const peerKey = peer !== undefined ? `mtls:${peer.agentId}` : `addr:${req.socket.remoteAddress ?? ''}`
    const sid = req.headers['mcp-session-id']
    if (typeof sid === 'string') {
      const session = sessions.get(sid)
      // Another agent (or, without mTLS, another address) holding the session id is answered
      // as if the session did not exist: it can neither use, read (GET stream) nor end (DELETE) it.
      if (session === undefined || session.owner !== peer?.agentId || session.peer !== peerKey) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(rpcError(-32001, 'Session not found'))
        return
      }
      session.lastSeen = Date.now()
      attachSessionProof(req, () => prove(sid))
      if (req.method !== 'POST') {
        await session.transport.handleRequest(req, res)
        return
      }
      const parsed = await readJson(req, maxBodyBytes)
      if (parsed === undefined) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(rpcError(-32700, 'Parse error'))
        return
      }
      await session.transport.handleRequest(req, signalDenials(res, parsed), parsed)
      return
    }
    if (req.method !== 'POST') {
      res.writeHead(400, { 'content-type': 'application/json' }).end(rpcError(-32000, 'Bad Request: no session'))
      return
    }
    const body = await readJson(req, maxBodyBytes)
    if (body === undefined) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(rpcError(-32700, 'Parse error'))
      return
    }
    // Room for one more token-less session of this peer, then overall: the oldest token-less
    // session goes first; sessions that carried a capability are never pushed out by them.
    const mine = tokenless.get(peerKey)
    if (mine !== undefined && mine.size >= maxTokenlessSessionsPerPeer) end(mine.values().next().value as string)
    if (sessions.size >= maxSessions) sweep()
    if (sessions.size >= maxSessions) {
      const victim = oldestTokenless()
      if (victim === undefined) {
        res.writeHead(503, { 'content-type': 'application/json' }).end(rpcError(-32000, 'Too many sessions'))
        return
      }
      end(victim)
    }
    const server = await createServer()
    const transport = await transportFor(server, {
      sessionIdGenerator: randomUUID,
      enableJsonResponse,
      enableDnsRebindingProtection: true,
      allowedHosts,
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server, owner: peer?.agentId, peer: peerKey, proven: false, lastSeen: Date.now() })
        const set = tokenless.get(peerKey) ?? new Set<string>()
        set.add(id)
        tokenless.set(peerKey, set)
      },
      onsessionclosed: (id) => {
        forget(id)
      },
    })
    transport.onclose = () => {
      if (transport.sessionId !== undefined) forget(transport.sessionId)
    }
    await (server as unknown as { connect(t: HostedTransport): Promise<void> }).connect(transport)
    await transport.handleRequest(req, signalDenials(res, body), body)
    // Anything but an initialize request opens no session: release the server at once.
    if (transport.sessionId === undefined || !sessions.has(transport.sessionId)) await server.close()
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(port, host, () => {
      http.off('error', reject)
      resolve()
    })
  })
  const bound = (http.address() as AddressInfo).port
  const hostPart = host.includes(':') ? `[${host}]` : host
  allowedHosts = [...new Set([`${hostPart}:${bound}`, `localhost:${bound}`, `127.0.0.1:${bound}`, `[::1]:${bound}`])]
  const url = new URL(`${tlsContext === undefined ? 'http' : 'https'}://${hostPart}:${bound}${path}`)
  const resource = resourceMetadata.resource ?? url.href
  // RFC 9728 section 3.1: the well-known segment goes between the host and the resource's path.
  const resourceUrl = new URL(resource)
  metadataUrl = new URL(`/.well-known/oauth-protected-resource${resourceUrl.pathname === '/' ? '' : resourceUrl.pathname}`, resourceUrl)
    .href
  metadataBody = JSON.stringify(protectedResourceMetadata(resource, resourceMetadata))
  const challenge = (code: AgentTrustErrorCode, scope: string | undefined) => {
    const error = new AgentTrustError()
    error.code = code
    return denialAnswer(error, { resourceMetadata: metadataUrl, realm: resourceMetadata.realm, requiredScope: scope })
  }
  const signalDenials = (res: ServerResponse, body: unknown): ServerResponse => (httpSignals ? holdForDenial(res, body, challenge) : res)

  return {
    url,
    get sessions() {
      return sessions.size
    },
    updateCredentials(credentials: TlsCredentials) {
      if (tlsContext === undefined) throw new TypeError('updateCredentials: this server was started without tls')
      tlsContext.update(credentials)
    },
    async close() {
      clearInterval(sweeper)
      const open = [...sessions.values()]
      sessions.clear()
      tokenless.clear()
      await Promise.allSettled(open.map((s) => s.server.close()))
      await new Promise<void>((resolve) => {
        http.close(() => resolve())
        http.closeAllConnections()
      })
    },
  }
}

/** The RFC 9728 section 2 document. */
function protectedResourceMetadata(resource: string, o: ProtectedResourceMetadataOptions): Record<string, unknown> {
  return {
    resource,
    ...(o.authorizationServers === undefined ? {} : { authorization_servers: [...o.authorizationServers] }),
    ...(o.jwksUri === undefined ? {} : { jwks_uri: o.jwksUri }),
    ...(o.scopesSupported === undefined ? {} : { scopes_supported: [...o.scopesSupported] }),
    // The capability travels in the Agent-Trust-Capability header (or in params._meta, which HTTP does not see).
    bearer_methods_supported: ['header'],
    resource_signing_alg_values_supported: ['ES256'],
    ...(o.resourceName === undefined ? {} : { resource_name: o.resourceName }),
  }
}

type Challenge = (code: AgentTrustErrorCode, scope: string | undefined) => ReturnType<typeof denialAnswer>

/**
 * The authorization specification's HTTP signals for a guard denial. A POST carrying one
 * JSON-RPC request whose answer is the guard's denial (`-32003`, `data.code` an agent-trust
 * code) is answered with the denial table's status and `WWW-Authenticate` challenge (401
 * `invalid_token`, 403 `insufficient_scope` with `scope`, 503 with `Retry-After`) and the
 * same JSON-RPC error as an `application/json` body. The transport's response head is held
 * back until its first bytes show whether they are that denial; anything else (a result,
 * a notification first, a batch) goes out unchanged.
 */
function holdForDenial(res: ServerResponse, body: unknown, challenge: Challenge): ServerResponse {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return res
  const { id, method, params } = body as { id?: unknown; method?: unknown; params?: { _meta?: unknown } }
  if ((typeof id !== 'string' && typeof id !== 'number') || typeof method !== 'string') return res
  const meta = params?._meta
  if (typeof meta === 'object' && meta !== null && Object.hasOwn(meta, CAPABILITY_META_KEY)) return res
  const r = res as unknown as Record<'writeHead' | 'flushHeaders' | 'write' | 'end', (...args: unknown[]) => unknown>
  const original = { writeHead: r.writeHead, flushHeaders: r.flushHeaders, write: r.write, end: r.end }
  let head: unknown[] | undefined
  const restore = (): void => {
    Object.assign(r, original)
  }
  const release = (): void => {
    restore()
    if (head !== undefined) original.writeHead.apply(r, head)
  }
  const decide = (chunk: unknown): boolean => {
    const denial = denialIn(chunk, id)
    if (denial === undefined) return false
    const answer = challenge(denial.code, denial.scope)
    restore()
    original.writeHead.call(r, answer.status, answer.headers)
    original.end.call(r, JSON.stringify(denial.message))
    return true
  }
  r.writeHead = (...args: unknown[]) => {
    head = args
    return r
  }
  r.flushHeaders = () => undefined
  r.write = (chunk: unknown, ...rest: unknown[]) => {
    if (decide(chunk)) return true
    release()
    return original.write.call(r, chunk, ...rest)
  }
  r.end = (chunk?: unknown, ...rest: unknown[]) => {
    if (chunk !== undefined && typeof chunk !== 'function' && decide(chunk)) return r
    release()
    return original.end.call(r, chunk, ...rest)
  }
  return res
}

/** The guard's denial of request `id` in a JSON body or the first SSE event, if that is what the bytes are. */
function denialIn(
  chunk: unknown,
  id: string | number,
): { code: AgentTrustErrorCode; scope: string | undefined; message: unknown } | undefined {
  const text = typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : undefined
  if (text === undefined || text.length > 64 * 1024) return undefined
  let json = text.trim()
  if (!json.startsWith('{')) {
    const data = json
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
    if (data.length === 0) return undefined
    json = data.join('\n')
  }
  let message: { id?: unknown; error?: { code?: unknown; data?: { code?: unknown; scope?: unknown } } }
  try {
    message = JSON.parse(json) as typeof message
  } catch {
    return undefined
  }
  const code = message?.error?.data?.code
  if (message?.id !== id || message.error?.code !== CAPABILITY_DENIED || typeof code !== 'string' || !Object.hasOwn(ERROR_CATALOG, code))
    return undefined
  const scope = message.error.data?.scope
  return { code: code as AgentTrustErrorCode, scope: typeof scope === 'string' ? scope : undefined, message }
}

function rpcError(code: number, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null })
}

/** A refused peer, shaped like the guard's denials: `data.code` is the agent-trust code. */
function rpcDenied(error: AgentTrustError): string {
  const rule = error.details.rule
  return JSON.stringify({
    jsonrpc: '2.0',
    error: {
      code: CAPABILITY_DENIED,
      message: error.message,
      data: { code: error.code, ...(typeof rule === 'string' ? { details: { rule } } : {}) },
    },
    id: null,
  })
}

/**
 * The HTTPS server and its peer checks. `agent-trust/identity` (and with it
 * `@peculiar/x509`) is loaded only here, so plain-HTTP users of `agent-trust/mcp` need neither.
 */
async function setUpTls(tls: StreamableHttpTlsOptions, listener: (req: IncomingMessage, res: ServerResponse) => void): Promise<TlsContext> {
  if (typeof tls !== 'object' || tls === null) throw new TypeError('serveStreamableHttp: tls must be an object')
  const identity = await import('agent-trust/identity')
  const { credentials, revocations, audit, now } = tls
  const serverOptions = identity.mtlsServerOptions(credentials) // TypeError for anything but PEM credentials
  const trustDomain = tls.trustDomain ?? identity.trustDomainOf(credentials.ca)
  const serverIdOf = (c: TlsCredentials): string => {
    try {
      return identity.inspectWorkloadCertificate(new X509Certificate(c.cert).raw, trustDomain, 'server').workload.id
    } catch (cause) {
      throw new TypeError(`serveStreamableHttp: tls.credentials.cert is not an agent-trust certificate of trust domain "${trustDomain}"`, {
        cause,
      })
    }
  }
  const serverId = serverIdOf(credentials)
  // `ca` also pins the issuer to this bundle, whatever else the TLS stack was told to trust.
  const validation = { trustDomain, revocations, ca: credentials.ca, ...(now === undefined ? {} : { now }) }
  const refuse = (error: AgentTrustError, stage: 'connection' | 'request'): void => {
    audit?.record(peerRefused('tool_call', error.code, { destination: serverId, stage, reason: error.details.rule }))
  }
  const server = createHttpsServer(serverOptions, listener)
  identity.guardTlsServer(server, { ...validation, onRefused: (e) => refuse(e, 'connection') })
  server.on('tlsClientError', (err: Error & { code?: unknown }) => {
    // No certificate, another CA, expired: the handshake itself failed.
    audit?.record(
      peerRefused('tool_call', 'ERR_PEER_UNAUTHENTICATED', {
        destination: serverId,
        stage: 'handshake',
        reason: String(err.code ?? 'tls'),
      }),
    )
  })
  return {
    server,
    peer: identity.createPeerIdentity(validation),
    refuse,
    update(next: TlsCredentials) {
      const options = identity.mtlsServerOptions(next)
      if (serverIdOf(next) !== serverId) throw new TypeError('updateCredentials: the new certificate names another server')
      server.setSecureContext(options)
    },
  }
}

/** Resolves true when the middleware called next(), false when it answered the request itself. */
function runMiddleware(mw: HttpMiddleware, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const answered = () => resolve(false)
    res.once('finish', answered)
    res.once('close', answered)
    const next = (error?: unknown) => {
      res.off('finish', answered)
      res.off('close', answered)
      if (error !== undefined) reject(error instanceof Error ? error : new Error('middleware failed'))
      else resolve(true)
    }
    Promise.resolve()
      .then(() => mw(req, withExpressHelpers(res), next))
      .catch(reject)
  })
}

/** Connect/express middleware answers through `res.status().json()` and `res.set()`: provide them on a plain Node response. */
function withExpressHelpers(res: ServerResponse): ServerResponse {
  const r = res as ServerResponse & { status?: unknown; set?: unknown; json?: unknown }
  if (typeof r.status !== 'function') {
    Object.assign(r, {
      status(code: number) {
        res.statusCode = code
        return r
      },
      set(name: string, value: string) {
        res.setHeader(name, value)
        return r
      },
      json(value: unknown) {
        if (!res.headersSent) res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify(value))
        return r
      },
    })
  }
  return res
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) return undefined
    chunks.push(chunk as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    return undefined
  }
}
