/**
 * Client side: an SDK `Client` that carries a fresh capability on every request.
 *
 * On SDK 1.x (`@modelcontextprotocol/sdk`) the wrapper replaces the client's `request` method
 * (every SDK call, `callTool`, `listTools`, `readResource`, the experimental task streams,
 * goes through it); on SDK 2.x (`@modelcontextprotocol/client`) it replaces the internal
 * request funnel `_requestWithSchemaViaCodec` that `request`, the `server/discover` probe and
 * multi-round-trip retries all pass through (a 2.x client without it falls back to `request`).
 * Before a request leaves, it asks the issuer for a token for exactly that call and puts it in
 * `params._meta["io.agent-trust/capability"]`. One token per request, never cached, never
 * retried with; and only for the one server the wrapper is bound to.
 *
 * Subpath: `agent-trust/mcp`.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { Client as ClientV2 } from '@modelcontextprotocol/client'
import { ConfigInvalid, TokenAudience } from 'agent-trust'
import type { AuditContext, CapabilityIssuer } from 'agent-trust'
import { fn, parseOptions, withMethods } from '#internal'
import { z } from 'zod'
import {
  AUDIENCE_CAPABILITY_KEY,
  CAPABILITY_DENIED,
  CAPABILITY_META_KEY,
  methodOperation,
  methodScope,
  UNGUARDED_METHODS,
} from './policy.js'

export interface WithCapabilitiesOptions {
  /** Who mints: an in-process `Authority`, or a remote client implementing `CapabilityIssuer`. */
  readonly issuer: CapabilityIssuer
  /** This agent's id: the tokens' `sub`. */
  readonly agentId: string
  /** The one server this client talks to: every token's `aud`. */
  readonly serverId: string
  /** Audit context copied into every token; a function is called per request (e.g. per task). */
  readonly context: AuditContext | (() => AuditContext)
  /** Token lifetime in seconds. Default: the authority's (60). */
  readonly ttlSeconds?: number
  /** Bind tokens to this client certificate (RFC 8705 `x5t#S256`) when calls go over mTLS. */
  readonly certificateThumbprint?: string
  /**
   * Refuse to send tokens unless the server advertises (in `capabilities.experimental
   * ["io.agent-trust"].audience`) exactly `serverId`. Default `false`: a server that
   * advertises another audience is always refused; one that advertises none is trusted
   * to be the configured server (the advertisement is a misconfiguration check, not
   * authentication: use TLS/mTLS to authenticate the server).
   */
  readonly requireAdvertisedAudience?: boolean
}

/** `withCapabilities(client, options)`, checked once when the client is wrapped. */
/** What every capability-sending client needs (`withCapabilities`, `capabilityFetch`). */
export const CapabilityClientShape = {
  issuer: withMethods<CapabilityIssuer>('mint', 'mintForTool'),
  agentId: z.string().min(1),
  serverId: z.string().min(1),
  context: z.union([fn<() => AuditContext>(), z.looseObject({})], { error: 'expected an audit context or a function returning one' }),
  ttlSeconds: z.int().min(1).optional(),
  certificateThumbprint: z.string().min(1).optional(),
}
const WithCapabilitiesArgs = z.strictObject({
  client: withMethods<Client | ClientV2>('request'),
  options: z.strictObject({ ...CapabilityClientShape, requireAdvertisedAudience: z.boolean().optional() }),
})

interface OutboundRequest {
  readonly method: string
  readonly params?: Record<string, unknown>
}
type RequestFn = (request: OutboundRequest, resultSchema: unknown, options?: unknown) => Promise<unknown>
/** SDK 2.x's request funnel: `(codec, request, resultSchema, options)`. */
type FunnelFn = (codec: unknown, request: OutboundRequest, resultSchema: unknown, options?: unknown) => Promise<unknown>

const kWrapped = Symbol.for('agent-trust.mcp.with-capabilities')

/**
 * Make `client` attach a fresh capability token to every request it sends (except
 * `initialize` and `ping`). `tools/call` tokens come from `issuer.mintForTool` (the scope
 * the tool's template yields for these arguments); other requests get `mcp:<serverId>:<method>`.
 * Returns the same client. A mint refusal rejects the call with the authority's coded
 * error, and nothing is sent.
 *
 * The wrapper is bound to `serverId` and to the first transport it sends a token over: if
 * the client is later reconnected to another transport, or the server advertises another
 * audience, calls are refused with `ERR_TOKEN_AUDIENCE` before anything is minted.
 *
 * @example
 * ```ts
 * import { Client } from '@modelcontextprotocol/sdk/client/index.js'
 * import { withCapabilities } from 'agent-trust/mcp'
 *
 * const client = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
 *   issuer: authority, agentId: 'agent-summarizer-v2', serverId: 'agent-database-reader', context,
 * })
 * await client.connect(transport)
 * await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })
 * ```
 */
export function withCapabilities<C extends Client | ClientV2>(client: C, options: WithCapabilitiesOptions): C {
  parseOptions('withCapabilities', WithCapabilitiesArgs, { client, options })
  const target = client as unknown as {
    request: RequestFn
    transport?: unknown
    getServerCapabilities(): Record<string, unknown> | undefined
    [kWrapped]?: true
  }
  if (target[kWrapped] === true)
    throw new ConfigInvalid('withCapabilities: this client already carries capabilities', { details: { rule: 'client' } })
  const { issuer, agentId, serverId, context, ttlSeconds, certificateThumbprint, requireAdvertisedAudience = false } = options

  let boundTransport: unknown

  const mint = async (method: string, params: Record<string, unknown> | undefined): Promise<string> => {
    const ctx = typeof context === 'function' ? context() : context
    if (method === 'tools/call') {
      const args = params?.arguments
      const r = await issuer.mintForTool({
        subject: agentId,
        audience: serverId,
        tool: String(params?.name),
        args: typeof args === 'object' && args !== null ? (args as Record<string, unknown>) : undefined,
        context: ctx,
        ttlSeconds,
        certificateThumbprint,
      })
      return r.token
    }
    const scope = methodScope(serverId, method)
    // An impossible scope makes the authority refuse with its own coded error.
    return issuer.mint({
      subject: agentId,
      audience: serverId,
      scope: [scope ?? method],
      operation: methodOperation(method),
      context: ctx,
      ttlSeconds,
      certificateThumbprint,
    })
  }

  const withToken = async (request: OutboundRequest, via?: unknown): Promise<OutboundRequest> => {
    assertBound(via)
    const token = await mint(request.method, request.params)
    const params = request.params ?? {}
    const meta = typeof params._meta === 'object' && params._meta !== null ? (params._meta as Record<string, unknown>) : {}
    // Our key is always overwritten: a caller cannot smuggle another token through.
    return { ...request, params: { ...params, _meta: { ...meta, [CAPABILITY_META_KEY]: token } } }
  }

  const funnel = (client as unknown as { _requestWithSchemaViaCodec?: unknown })._requestWithSchemaViaCodec
  if (typeof funnel === 'function') {
    // SDK 2.x: every outbound request (`request`, the `server/discover` probe, the retry of a
    // multi-round-trip request) leaves through this one internal method, so each gets its own token.
    const sendVia = (funnel as FunnelFn).bind(client)
    const wrapped: FunnelFn = async function requestWithCapability(codec, request, resultSchema, requestOptions) {
      if (UNGUARDED_METHODS.has(request?.method)) return sendVia(codec, request, resultSchema, requestOptions)
      return sendVia(codec, await withToken(request), resultSchema, requestOptions)
    }
    ;(client as unknown as { _requestWithSchemaViaCodec: FunnelFn })._requestWithSchemaViaCodec = wrapped
    // Two requests are written straight to the transport, past the funnel: the connect-time
    // `server/discover` probe of a negotiating client and `listen()`'s `subscriptions/listen`.
    // Give those their token on the transport the client was handed.
    const v2 = client as unknown as { connect(transport: unknown, ...rest: unknown[]): Promise<void> }
    const connect = v2.connect.bind(client)
    v2.connect = function connectWithCapability(transport: unknown, ...rest: unknown[]) {
      probeWithToken(transport, withToken)
      return connect(transport, ...rest)
    }
  } else {
    const send = target.request.bind(client) as RequestFn
    target.request = async function requestWithCapability(request, resultSchema, requestOptions) {
      if (UNGUARDED_METHODS.has(request?.method)) return send(request, resultSchema, requestOptions)
      return send(await withToken(request), resultSchema, requestOptions)
    }
  }
  target[kWrapped] = true
  return client

  /** `via`: the transport a message is written to directly (SDK 2.x), when it is not yet the client's. */
  function assertBound(via?: unknown): void {
    const transport = via ?? target.transport
    if (transport === undefined) return // not connected: the SDK rejects the request itself
    // The SDK's HTTP transports with `redirectPolicy: 'follow'` let fetch follow a redirect
    // to any origin, carrying the message and its capability token there.
    // SDK 1.x keeps the policy as `_followRedirects`, SDK 2.x as `_redirectPolicy`.
    const t = transport as { _followRedirects?: unknown; _redirectPolicy?: unknown }
    if (t._followRedirects === true || t._redirectPolicy === 'follow') {
      throw new ConfigInvalid(
        "the transport was built with redirectPolicy 'follow', which would carry capability tokens to another origin; use the default 'same-origin'",
        { details: { rule: 'redirect-policy' } },
      )
    }
    if (boundTransport === undefined) boundTransport = transport
    else if (boundTransport !== transport) {
      throw new TokenAudience(
        `this client is bound to server "${serverId}" and was reconnected to another transport; wrap a new client per server`,
        {
          details: { rule: 'client-binding' },
        },
      )
    }
    const advertised = advertisedAudience(target.getServerCapabilities())
    if (advertised !== undefined && advertised !== serverId) {
      throw new TokenAudience(`the server advertises audience "${advertised.slice(0, 64)}", not "${serverId}"; no token was minted`, {
        details: { rule: 'server-audience' },
      })
    }
    if (advertised === undefined && requireAdvertisedAudience) {
      throw new TokenAudience(`the server does not advertise agent-trust audience "${serverId}"; no token was minted`, {
        details: { rule: 'server-audience' },
      })
    }
  }
}

const kProbe = Symbol.for('agent-trust.mcp.discover-probe')
/** SDK 2.x requests that a `Client` writes to its transport without its request funnel. */
const DIRECT_METHODS: ReadonlySet<string> = new Set(['server/discover', 'subscriptions/listen'])

function probeWithToken(transport: unknown, withToken: (request: OutboundRequest, via: unknown) => Promise<OutboundRequest>): void {
  const t = transport as { send?: unknown; [kProbe]?: true } | undefined
  if (typeof t !== 'object' || t === null || typeof t.send !== 'function' || t[kProbe] === true) return
  const send = (t.send as (message: unknown, ...rest: unknown[]) => Promise<void>).bind(t)
  t.send = async function sendWithCapability(message: unknown, ...rest: unknown[]) {
    const m = message as { id?: unknown; method?: unknown; params?: { _meta?: unknown } } | undefined
    const meta = m?.params?._meta
    const carries = typeof meta === 'object' && meta !== null && Object.hasOwn(meta, CAPABILITY_META_KEY)
    if (typeof m?.method === 'string' && DIRECT_METHODS.has(m.method) && m.id !== undefined && !carries) {
      // Bound like every request: a probe on another transport than the first one is refused.
      return send({ ...m, ...(await withToken(m as OutboundRequest, t)) }, ...rest)
    }
    return send(message, ...rest)
  }
  t[kProbe] = true
}

function advertisedAudience(capabilities: Record<string, unknown> | undefined): string | undefined {
  const experimental = capabilities?.experimental as Record<string, unknown> | undefined
  const ours = experimental?.[AUDIENCE_CAPABILITY_KEY] as { audience?: unknown } | undefined
  return typeof ours?.audience === 'string' ? ours.audience : undefined
}

/**
 * The agent-trust code of a failed call, if it was a capability denial: from the JSON-RPC
 * error a guarded server returned (`error.data.code`), or from a coded error the issuer
 * threw before anything was sent. `undefined` for any other failure.
 */
export function capabilityErrorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const e = error as { code?: unknown; data?: { code?: unknown } }
  if (typeof e.code === 'string' && e.code.startsWith('ERR_')) return e.code
  if (e.code === CAPABILITY_DENIED && typeof e.data?.code === 'string' && e.data.code.startsWith('ERR_')) return e.data.code
  // Over Streamable HTTP a token-less or header-token denial is an HTTP 401/403/503 (the MCP
  // authorization spec); SDK 1.x client transports surface it as an error whose `code` is the
  // HTTP status and whose message carries the JSON-RPC body.
  if (typeof e.code === 'number' && error instanceof Error) return deniedInBody(error.message)
  // SDK 2.x client transports: an `SdkHttpError` whose `data` holds the HTTP status and the body text.
  const http = e.data as { status?: unknown; text?: unknown } | undefined
  if (typeof http?.status === 'number' && typeof http.text === 'string') return deniedInBody(http.text)
  return undefined
}

function deniedInBody(message: string): string | undefined {
  const start = message.indexOf('{')
  if (start < 0) return undefined
  try {
    const body = JSON.parse(message.slice(start)) as { error?: { code?: unknown; data?: { code?: unknown } } }
    const code = body.error?.data?.code
    return body.error?.code === CAPABILITY_DENIED && typeof code === 'string' && /^ERR_[A-Z_]+$/.test(code) ? code : undefined
  } catch {
    return undefined
  }
}
