/**
 * A minimal Streamable HTTP host for guarded MCP servers (used by the gateway command, the
 * examples, the tests and the bench): one `node:http` server, one MCP session per client,
 * each session its own server instance from `createServer()` (an SDK server object serves
 * one transport). Loopback by default, with the SDK's DNS-rebinding Host check on.
 *
 * Subpath: `agent-trust/mcp`.
 */
import { randomUUID } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'

/** Connect-style middleware, e.g. the SDK's `requireBearerAuth` for the server's own OAuth. */
export type HttpMiddleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void | Promise<void>

export interface ServeStreamableHttpOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  readonly host?: string
  /** Port; `0` (default) picks a free one. */
  readonly port?: number
  /** The MCP endpoint path. Default `/mcp`. */
  readonly path?: string
  /** At most this many open sessions; more get HTTP 503. Default 1000. */
  readonly maxSessions?: number
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
}

export interface StreamableHttpServer {
  /** The endpoint, e.g. `http://127.0.0.1:54321/mcp`. */
  readonly url: URL
  /** Open sessions. */
  readonly sessions: number
  close(): Promise<void>
}

type AnyServer = McpServer | Server
interface Session {
  readonly transport: StreamableHTTPServerTransport
  readonly server: AnyServer
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
 * ```
 */
export async function serveStreamableHttp(createServer: () => AnyServer | Promise<AnyServer>, options: ServeStreamableHttpOptions = {}): Promise<StreamableHttpServer> {
  const { host = '127.0.0.1', port = 0, path = '/mcp', maxSessions = 1000, maxBodyBytes = 4 * 1024 * 1024, enableJsonResponse = false, middleware } = options
  if (typeof createServer !== 'function') throw new TypeError('serveStreamableHttp: createServer must be a function')
  if (!path.startsWith('/')) throw new TypeError('serveStreamableHttp: path must start with "/"')
  const sessions = new Map<string, Session>()
  let allowedHosts: string[] = []

  const http = createHttpServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(rpcError(-32603, 'Internal error'))
      else res.end()
    })
  })

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname !== path) {
      res.writeHead(404).end()
      return
    }
    if (middleware !== undefined && !(await runMiddleware(middleware, req, res))) return
    const sid = req.headers['mcp-session-id']
    if (typeof sid === 'string') {
      const session = sessions.get(sid)
      if (session === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(rpcError(-32001, 'Session not found'))
        return
      }
      await session.transport.handleRequest(req, res)
      return
    }
    if (req.method !== 'POST') {
      res.writeHead(400, { 'content-type': 'application/json' }).end(rpcError(-32000, 'Bad Request: no session'))
      return
    }
    if (sessions.size >= maxSessions) {
      res.writeHead(503, { 'content-type': 'application/json' }).end(rpcError(-32000, 'Too many sessions'))
      return
    }
    const body = await readJson(req, maxBodyBytes)
    if (body === undefined) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(rpcError(-32700, 'Parse error'))
      return
    }
    const server = await createServer()
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      enableJsonResponse,
      enableDnsRebindingProtection: true,
      allowedHosts,
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, server })
      },
      onsessionclosed: (id) => {
        sessions.delete(id)
      },
    })
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId)
    }
    await server.connect(transport)
    await transport.handleRequest(req, res, body)
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
  const url = new URL(`http://${hostPart}:${bound}${path}`)

  return {
    url,
    get sessions() {
      return sessions.size
    },
    async close() {
      const open = [...sessions.values()]
      sessions.clear()
      await Promise.allSettled(open.map((s) => s.server.close()))
      await new Promise<void>((resolve) => {
        http.close(() => resolve())
        http.closeAllConnections()
      })
    },
  }
}

function rpcError(code: number, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null })
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
