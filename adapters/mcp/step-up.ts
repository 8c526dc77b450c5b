/**
 * Client side over Streamable HTTP: capabilities in the `Agent-Trust-Capability` header, with
 * the MCP authorization specification's scope step-up (RFC 6750 section 3.1 challenge, 403
 * `insufficient_scope`).
 *
 * A guarded server behind `serveStreamableHttp` answers a header capability that lacks the
 * call's scope with HTTP 403 and `WWW-Authenticate: Bearer error="insufficient_scope",
 * scope="<what the call needs>", resource_metadata="<RFC 9728 document>"`. The SDKs' own
 * step-up (SDK 2.x `StreamableHTTPClientTransport`, `onInsufficientScope: 'reauthorize'`)
 * re-runs an OAuth authorization with an `OAuthClientProvider` and resends `Authorization`;
 * agent-trust capabilities are one-use tokens from the agent's authority in their own header,
 * so that hook does not apply (without an OAuth provider the SDK throws
 * `InsufficientScopeError`). {@link capabilityFetch} does the step-up at the fetch level, for
 * the transports of both SDKs: it asks the issuer for a token with the challenged scope and
 * resends the request once. The authority decides: a scope the agent's grants do not cover
 * is refused there, and nothing is resent.
 *
 * Subpath: `agent-trust/mcp`.
 */
import { ConfigInvalid, TokenAudience } from 'agent-trust'
import type { Operation } from 'agent-trust'
import { z } from 'zod'
import { fn, parseOptions } from '#internal'
import { CapabilityClientShape, type WithCapabilitiesOptions } from './client.js'
import { CAPABILITY_HEADER, methodOperation, methodScope, UNGUARDED_METHODS } from './policy.js'

export interface CapabilityFetchOptions extends Omit<WithCapabilitiesOptions, 'requireAdvertisedAudience'> {
  /** The fetch to wrap. Default: the global `fetch`. */
  readonly fetch?: typeof fetch
}

/** {@link CapabilityFetchOptions}, checked once when the fetch is built. */
const CapabilityFetchOptionsSchema = z.strictObject({ ...CapabilityClientShape, fetch: fn<typeof fetch>().optional() })

/** At most this many scopes, of at most 512 characters each, are taken from a challenge. */
const MAX_CHALLENGED_SCOPES = 16
const MAX_SCOPE_LENGTH = 512

interface RpcRequest {
  readonly method: string
  readonly params?: Record<string, unknown>
}

/**
 * A `fetch` for an SDK `StreamableHTTPClientTransport` (1.x or 2.x) that sends a fresh
 * capability for each JSON-RPC request in the `Agent-Trust-Capability` header (the call's own
 * scope, as `withCapabilities` mints it) and, when the server answers 403 `insufficient_scope`,
 * gets one token for the challenged scope and resends the request once. Bound to the first
 * endpoint it is used with: a request to another URL is refused with `ERR_TOKEN_AUDIENCE`
 * before anything is minted; fetch itself never follows a redirect with a token.
 *
 * @example
 * ```ts
 * const transport = new StreamableHTTPClientTransport(url, {
 *   fetch: capabilityFetch({ issuer: authority, agentId: 'agent-summarizer-v2', serverId: 'agent-database-reader', context }),
 * })
 * ```
 */
export function capabilityFetch(options: CapabilityFetchOptions): typeof fetch {
  parseOptions('capabilityFetch', CapabilityFetchOptionsSchema, options)
  const { issuer, agentId, serverId, context, ttlSeconds, certificateThumbprint } = options
  const base = options.fetch ?? fetch
  const common = () => ({
    subject: agentId,
    audience: serverId,
    context: typeof context === 'function' ? context() : context,
    ttlSeconds,
    certificateThumbprint,
  })
  let endpoint: string | undefined

  /** The call's own token and operation, as withCapabilities mints them. */
  const mintFor = async (request: RpcRequest): Promise<{ token: string; operation: Operation }> => {
    if (request.method === 'tools/call') {
      const args = request.params?.arguments
      const r = await issuer.mintForTool({
        ...common(),
        tool: String(request.params?.name),
        args: typeof args === 'object' && args !== null ? (args as Record<string, unknown>) : undefined,
      })
      return { token: r.token, operation: r.operation }
    }
    const operation = methodOperation(request.method)
    const scope = methodScope(serverId, request.method)
    return { token: await issuer.mint({ ...common(), scope: [scope ?? request.method], operation }), operation }
  }

  return async function fetchWithCapability(input, init) {
    const request = rpcRequestOf(init)
    if (request === undefined || UNGUARDED_METHODS.has(request.method)) return base(input, init)
    if (input instanceof Request)
      throw new ConfigInvalid('capabilityFetch: pass the URL and init separately (as the SDK transports do)', {
        details: { rule: 'fetch-input' },
      })
    const url = String(input)
    endpoint ??= url
    if (url !== endpoint)
      throw new TokenAudience(`this fetch is bound to the endpoint of server "${serverId}"; no token was minted for another URL`, {
        details: { rule: 'client-binding' },
      })
    const first = await mintFor(request)
    const response = await base(input, withCapability(init, first.token))
    const scopes = challengedScopes(response)
    if (scopes === undefined) return response
    await response.body?.cancel().catch(() => undefined)
    // The challenged scope comes from the server: the authority grants it only if the agent's
    // grants cover it, and the token is for this server alone. One step-up per request.
    const token = await issuer.mint({ ...common(), scope: scopes, operation: first.operation })
    return base(input, withCapability(init, token))
  }
}

/** The single JSON-RPC request a POST body holds (a string body, as the SDK transports send), or `undefined`. */
function rpcRequestOf(init: RequestInit | undefined): RpcRequest | undefined {
  if (init?.method?.toUpperCase() !== 'POST' || typeof init.body !== 'string') return undefined
  let message: unknown
  try {
    message = JSON.parse(init.body)
  } catch {
    return undefined
  }
  const m = message as { method?: unknown; id?: unknown; params?: unknown }
  if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof m.method !== 'string' || m.id === undefined) return undefined
  const params = typeof m.params === 'object' && m.params !== null ? (m.params as Record<string, unknown>) : undefined
  return { method: m.method, params }
}

/**
 * `init` with the token in the header, and redirects not followed by fetch: a followed 307/308
 * would resend the header (fetch drops only `Authorization` across origins) to wherever the
 * `Location` points. The SDK transports follow same-origin redirects themselves, through this fetch.
 */
function withCapability(init: RequestInit | undefined, token: string): RequestInit {
  const headers = new Headers(init?.headers)
  headers.set(CAPABILITY_HEADER, token)
  return { ...init, headers, redirect: 'manual' }
}

/**
 * The scopes of a 403 `insufficient_scope` Bearer challenge (RFC 6750 section 3: `scope` is a
 * space-delimited list), or `undefined` for any other answer or a challenge without scopes.
 */
export function challengedScopes(response: Response): string[] | undefined {
  if (response.status !== 403) return undefined
  const header = response.headers.get('www-authenticate')
  if (header === null || !/^\s*bearer\s/i.test(header)) return undefined
  if (param(header, 'error') !== 'insufficient_scope') return undefined
  const scopes = (param(header, 'scope') ?? '').split(' ').filter((s) => s.length > 0)
  if (scopes.length === 0 || scopes.length > MAX_CHALLENGED_SCOPES || scopes.some((s) => s.length > MAX_SCOPE_LENGTH)) return undefined
  return scopes
}

/** One auth-param of a challenge (RFC 9110 section 11.2: token or quoted-string). */
function param(header: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|[\\s,])${name}=(?:"((?:[^"\\\\]|\\\\.)*)"|([^\\s,"]+))`, 'i').exec(header)
  if (m === null) return undefined
  return m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]
}
