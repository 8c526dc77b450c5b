/**
 * How `guardMcpServer` reads a request of the MCP TypeScript SDK 2.x
 * (`@modelcontextprotocol/server`), and what it relies on there.
 *
 * What the SDK does (2.4):
 * - `McpServer` (high level) wraps a `Server` at `mcpServer.server`; `Server` extends the
 *   shared `Protocol`. `McpServer.registerTool` installs, on the first tool, one `tools/list`
 *   and one `tools/call` handler through `server.setRequestHandler(method, handler)`; the
 *   `tools/call` handler turns whatever the tool callback throws into a successful result
 *   with `isError: true`, as SDK 1.x does.
 * - `setRequestHandler` stores `_wrapHandler(method, validatingHandler)` in the protocol's
 *   request-handler table `_requestHandlers` (a `Map` keyed by method, a TypeScript-private
 *   property); `_onrequest` dispatches with `_requestHandlers.get(method) ??
 *   fallbackRequestHandler`. `_wrapHandler` is a protected hook for the SDK's own role
 *   classes; there is no public pre-dispatch hook or middleware for requests. The per-tool
 *   `scopeChallenge` hook only answers an OAuth scope challenge on the HTTP entry.
 * - A handler is called as `handler(request, ctx)`. `request.params._meta` and
 *   `ctx.mcpReq._meta` are the request's `_meta` with the reserved
 *   `io.modelcontextprotocol/*` envelope keys lifted out (to `ctx.mcpReq.envelope`); other
 *   keys, such as `io.agent-trust/capability`, stay. On HTTP, `ctx.http.authInfo` is the
 *   transport's `authInfo` (from `req.auth` on the Node transport) and `ctx.http.req` the
 *   web `Request` (headers as a `Headers` object).
 * - A handler that throws becomes a JSON-RPC error with the error's integer `code`, its
 *   `message` and its `data` (the 2025 codec maps only -32002 to -32602).
 * - Protocol versions: `initialize` negotiates the 2025 revisions (latest 2025-11-25, as SDK
 *   1.x). The 2026-07-28 revision has no `initialize`: each request carries its envelope in
 *   `_meta`, and a client probes with `server/discover`. `Server` installs a
 *   `server/discover` handler (in the same table) when its supported versions include a
 *   2026 revision; the serving entries `createMcpHandler` (HTTP, one instance per request)
 *   and `serveStdio` install it on the instances their factory returns for the modern era.
 *
 * So the guard uses the same table as on SDK 1.x: it replaces `_requestHandlers` with a map
 * that wraps every handler stored in it, and wraps `fallbackRequestHandler`. Both are SDK
 * internals; a `Server` without them is refused (`ERR_CONFIG_INVALID`), never run unguarded.
 */
import { ConfigInvalid } from 'agent-trust'
import { CAPABILITY_HEADER, CAPABILITY_META_KEY } from './policy.js'
import { SESSION_AUTH_KEY } from './peer.js'

type Meta = Record<string, unknown>

/** The handler context of SDK 2.x (`ServerContext`), as far as the guard reads it. */
export interface McpRequestContextV2 {
  readonly sessionId?: string
  readonly mcpReq: { readonly method: string; readonly _meta?: Meta; readonly [key: string]: unknown }
  readonly http?: {
    readonly authInfo?: { readonly token: string; readonly clientId: string; readonly scopes: string[]; readonly extra?: Meta }
    readonly req?: Request
    readonly [key: string]: unknown
  }
  readonly [key: string]: unknown
}

/**
 * Whether `protocol` (a `Server`, or the one under an `McpServer`) is SDK 2.x: its
 * `Protocol` has the `_wrapHandler` hook, which SDK 1.x does not.
 */
export function isV2Protocol(protocol: object): boolean {
  return typeof (protocol as { _wrapHandler?: unknown })._wrapHandler === 'function'
}

/** Whether `target` (an `McpServer` or a `Server`) is from SDK 2.x. */
export function isV2Server(target: unknown): boolean {
  if (typeof target !== 'object' || target === null) return false
  const inner = (target as { server?: unknown }).server
  const highLevel = typeof (target as { registerTool?: unknown }).registerTool === 'function' && typeof inner === 'object' && inner !== null
  return isV2Protocol(highLevel ? inner : target)
}

/** Refuse an SDK 2.x server whose dispatch the guard cannot sit in front of. */
export function assertV2Dispatch(protocol: { _requestHandlers?: unknown; setRequestHandler?: unknown }): void {
  if (!(protocol._requestHandlers instanceof Map) || typeof protocol.setRequestHandler !== 'function') {
    throw new ConfigInvalid(
      'guardMcpServer: this @modelcontextprotocol/server version has no request handler table the guard can wrap; the server was not started unguarded (use a supported 2.x release)',
      { details: { rule: 'sdk-dispatch' } },
    )
  }
}

/** The token from the `Agent-Trust-Capability` header (Streamable HTTP), or `undefined`. */
export function v2HeaderToken(ctx: McpRequestContextV2): unknown {
  const headers = ctx?.http?.req?.headers
  if (typeof headers?.get !== 'function') return undefined
  // Several header lines arrive joined with ", ": not a JWS, the verifier rejects it as malformed.
  return headers.get(CAPABILITY_HEADER) ?? undefined
}

/** The context without our token (in `_meta` and the header) and without the host's session hook. */
export function stripV2Context(ctx: McpRequestContextV2): McpRequestContextV2 {
  let out = ctx
  const meta = ctx?.mcpReq?._meta
  if (typeof meta === 'object' && meta !== null && Object.prototype.hasOwnProperty.call(meta, CAPABILITY_META_KEY)) {
    const { [CAPABILITY_META_KEY]: _token, ...rest } = meta
    out = { ...out, mcpReq: { ...out.mcpReq, _meta: rest } }
  }
  const http = ctx?.http
  if (http === undefined) return out
  let strippedHttp = http
  const req = http.req
  if (req !== undefined && typeof req.headers?.has === 'function' && req.headers.has(CAPABILITY_HEADER)) {
    strippedHttp = { ...strippedHttp, req: withoutCapabilityHeader(req) }
  }
  const authExtra = http.authInfo?.extra
  if (authExtra !== undefined && Object.prototype.hasOwnProperty.call(authExtra, SESSION_AUTH_KEY)) {
    const { [SESSION_AUTH_KEY]: _hook, ...rest } = authExtra
    strippedHttp = { ...strippedHttp, authInfo: { ...(http.authInfo as NonNullable<typeof http.authInfo>), extra: rest } }
  }
  return strippedHttp === http ? out : { ...out, http: strippedHttp }
}

/**
 * A new request, not a view of the old one: the same URL, method, signal and (while it is
 * unread) body, with headers that never held `Agent-Trust-Capability`. A wrapper over the
 * original would still hand the token to `clone()` and to `new Request(req)`, the copy a
 * handler makes to forward a request.
 */
function withoutCapabilityHeader(req: Request): Request {
  const headers = new Headers(req.headers)
  headers.delete(CAPABILITY_HEADER)
  const init: RequestInit & { duplex?: 'half' } = { method: req.method, headers, signal: req.signal }
  if (req.body !== null && !req.bodyUsed) {
    // A tee of the body: the transport can still read the original.
    init.body = req.clone().body
    init.duplex = 'half'
  }
  return new Request(req.url, init)
}
