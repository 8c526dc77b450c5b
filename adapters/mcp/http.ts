/**
 * A minimal Streamable HTTP host for guarded MCP servers (used by the gateway command, the
 * examples, the tests and the bench): one `node:http` server (or `node:https` with mutual
 * TLS), one MCP session per client, each session its own server instance from
 * `createServer()` (an SDK server object serves one transport). Loopback by default, with
 * the SDK's DNS-rebinding Host check on.
 *
 * Subpath: `agent-trust/mcp`.
 */
import { randomUUID } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { McpServer as McpServerV2, Server as ServerV2 } from '@modelcontextprotocol/server'
import type * as NodeTransportModule from '@modelcontextprotocol/node'
import type * as StreamableHttpModule from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { fn, optionProblem, parseOptions, toAgentTrustError, withMethods } from '#internal'
import { z } from 'zod'
import { AgentTrustError, ConfigInvalid } from 'agent-trust'
import type { AgentTrustErrorCode, PeerIdentity } from 'agent-trust'
import { denialAnswer } from 'agent-trust/http'
import type { TlsCredentials } from '#internal'
import { attachPeerIdentity, attachSessionProof } from './peer.js'
import { isV2Server } from './server-v2.js'
import { holdForDenial, protectedResourceMetadata, rpcDenied, rpcError } from './http-signals.js'
import { setUpTls } from './http-tls.js'
import { readJson, runMiddleware } from './http-plumbing.js'

export type {
  HttpMiddleware,
  ProtectedResourceMetadataOptions,
  ServeStreamableHttpOptions,
  StreamableHttpServer,
  StreamableHttpTlsOptions,
} from './http-options.js'
import type { HttpMiddleware, ServeStreamableHttpOptions, StreamableHttpServer } from './http-options.js'

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

const pem = z.string().refine((v) => v.includes('-----BEGIN'), 'expected PEM')
const bounded = (min: number, max: number) => z.int().min(min).max(max).optional()

/** `serveStreamableHttp(createServer, options)`, checked before anything listens. */
const ServeArgs = z.strictObject({
  createServer: fn(),
  options: z.strictObject({
    host: z.string().min(1).optional(),
    port: z.int().min(0).max(65535).optional(),
    path: z.string().startsWith('/', 'expected a path starting with "/"').optional(),
    maxSessions: bounded(1, 1_000_000),
    maxTokenlessSessionsPerPeer: bounded(1, 1_000_000),
    tokenlessIdleMs: bounded(100, 86_400_000),
    idleMs: bounded(100, 7 * 86_400_000),
    maxBodyBytes: z.int().min(1).optional(),
    enableJsonResponse: z.boolean().optional(),
    middleware: fn<HttpMiddleware>().optional(),
    tls: z
      .strictObject({
        // The private key is never echoed.
        credentials: z.looseObject({ cert: pem, key: pem, ca: pem }),
        trustDomain: z.string().min(1).optional(),
        revocations: withMethods('isRevoked').optional(),
        audit: withMethods('record').optional(),
        now: fn<() => number>().optional(),
      })
      .optional(),
    resourceMetadata: z
      .strictObject({
        resource: z.string().optional(),
        authorizationServers: z.array(z.string()).optional(),
        jwksUri: z.string().optional(),
        scopesSupported: z.array(z.string()).optional(),
        resourceName: z.string().optional(),
        realm: z.string().optional(),
      })
      .optional(),
    httpSignals: z.boolean().optional(),
  }),
})

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
  parseOptions('serveStreamableHttp', ServeArgs, { createServer, options })
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
      if (tlsContext === undefined) throw optionProblem('updateCredentials', ['tls'], 'this server was started without the tls option')
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
