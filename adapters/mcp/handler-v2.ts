/**
 * The one request `createMcpHandler` (MCP SDK 2.x, protocol revision 2026-07-28) answers
 * without the server's handler table: `subscriptions/listen`. The entry serves it itself
 * (it streams list-changed and resource-updated events from its event bus), so
 * `guardMcpServer` on the factory's servers never sees it. {@link guardMcpHandler} puts the
 * same check in front of it: a capability for `mcp:<serverId>:subscriptions/listen`
 * (a `read`), from `params._meta` or the `Agent-Trust-Capability` header, presented by the
 * request's authenticated peer. Every other request passes to the handler unchanged.
 *
 * Subpath: `agent-trust/mcp`.
 */
import { Verifier } from 'agent-trust'
import type { AgentTrustError, PeerIdentity } from 'agent-trust'
import { fn, instanceOf, parseOptions, toAgentTrustError, withMethods } from '#internal'
import { z } from 'zod'
import { CAPABILITY_DENIED, CAPABILITY_HEADER, CAPABILITY_META_KEY, methodOperation, methodScope } from './policy.js'
import { mtlsPeerIdentity } from './peer.js'

/** The fetch face of an `McpHttpHandler` (`createMcpHandler`'s result), as far as the guard uses it. */
export interface McpFetchHandler {
  fetch(
    request: Request,
    options?: { authInfo?: { token: string; clientId: string; scopes: string[]; extra?: Record<string, unknown> } },
  ): Promise<Response>
}

export interface GuardMcpHandlerOptions {
  /** The verifier the factory's servers are guarded with (its `id` is the server id). */
  readonly verifier: Verifier
  /** The request's authenticated peer, from the `authInfo` the host passes. Default {@link mtlsPeerIdentity}. */
  peerIdentity?(context: { readonly authInfo?: unknown }): PeerIdentity | undefined | Promise<PeerIdentity | undefined>
  /** Accept the token from the `Agent-Trust-Capability` header. Default `true`. */
  readonly acceptHeader?: boolean
}

const LISTEN = 'subscriptions/listen'

/** `guardMcpHandler(handler, options)`, checked once when the handler is wrapped. */
const GuardMcpHandlerArgs = z.strictObject({
  handler: withMethods<McpFetchHandler>('fetch'),
  options: z.strictObject({
    verifier: instanceOf(Verifier, 'a Verifier (createVerifier)'),
    peerIdentity: fn().optional(),
    acceptHeader: z.boolean().optional(),
  }),
})

/**
 * Check `subscriptions/listen` requests before `handler` serves them; returns the handler
 * with `fetch` replaced (the other members are the handler's own).
 *
 * @example
 * ```ts
 * const handler = guardMcpHandler(createMcpHandler(() => guardMcpServer(build(), { verifier, manifest })), { verifier })
 * http.createServer(toNodeHandler(handler))
 * ```
 */
export function guardMcpHandler<H extends McpFetchHandler>(handler: H, options: GuardMcpHandlerOptions): H {
  parseOptions('guardMcpHandler', GuardMcpHandlerArgs, { handler, options })
  const { verifier, acceptHeader = true } = options
  const peerIdentity = options.peerIdentity ?? ((c: { readonly authInfo?: unknown }) => mtlsPeerIdentity(c as never))
  const scope = methodScope(verifier.id, LISTEN) as string
  const operation = methodOperation(LISTEN)
  const inner = handler.fetch.bind(handler)

  const fetch: McpFetchHandler['fetch'] = async (request, requestOptions) => {
    const listen = request.method === 'POST' ? await listenRequest(request) : undefined
    if (listen === undefined || verifier.mode === 'off') return inner(request, requestOptions)
    try {
      const peer = await peerIdentity({ authInfo: requestOptions?.authInfo })
      const meta = listen.params?._meta
      const fromMeta = typeof meta === 'object' && meta !== null && Object.hasOwn(meta, CAPABILITY_META_KEY)
      const token = fromMeta
        ? (meta as Record<string, unknown>)[CAPABILITY_META_KEY]
        : acceptHeader
          ? (request.headers.get(CAPABILITY_HEADER) ?? undefined)
          : undefined
      // Enforce rejects with the coded error; audit records the denial and resolves.
      await verifier.authorize(token, { scope, operation, peer })
    } catch (e) {
      if (verifier.mode === 'enforce') return denied(toAgentTrustError(e), listen.id, scope)
    }
    return inner(request, requestOptions)
  }
  return Object.assign(Object.create(Object.getPrototypeOf(handler) as object) as H, handler, { fetch })
}

interface ListenRequest {
  readonly id: unknown
  readonly params?: { readonly _meta?: unknown }
}

/** The `subscriptions/listen` request in the body, if it is one (a batch holding one counts as one). */
async function listenRequest(request: Request): Promise<ListenRequest | undefined> {
  let body: unknown
  try {
    body = await request.clone().json()
  } catch {
    return undefined // not JSON: the handler answers it
  }
  const messages = Array.isArray(body) ? body : [body]
  const listen = messages.find((m) => typeof m === 'object' && m !== null && (m as { method?: unknown }).method === LISTEN) as
    ListenRequest | undefined
  if (listen === undefined) return undefined
  // A batch that holds a listen request is checked as that request, and refused whole if denied.
  return listen
}

function denied(error: AgentTrustError, id: unknown, scope: string): Response {
  const body = {
    jsonrpc: '2.0',
    id: typeof id === 'string' || typeof id === 'number' ? id : null,
    error: { code: CAPABILITY_DENIED, message: error.message, data: { code: error.code, details: error.details, scope } },
  }
  return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' } })
}
