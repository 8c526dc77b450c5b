/**
 * Server side: one call turns capability enforcement on for an MCP server.
 *
 * Where the check sits. `McpServer` catches whatever a tool callback throws and turns it
 * into a successful result with `isError: true`; a denial raised there would reach the
 * model as tool output, after the tool had been looked up and its input validated. So the
 * guard wraps the server's request-handler table itself: every request except
 * `initialize` and `ping` passes through the check *before* the SDK's handler (the one
 * `McpServer` installs, or the one you set on a low-level `Server`) sees it, and a denial
 * is a JSON-RPC error (`code` {@link CAPABILITY_DENIED}, `data.code` the agent-trust code).
 * Handlers registered after the guard are wrapped too, so registration order does not
 * matter, and the table is the same whatever the transport (stdio, Streamable HTTP,
 * in-memory).
 *
 * Subpath: `agent-trust/mcp`.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { McpServer as McpServerV2, Server as ServerV2 } from '@modelcontextprotocol/server'
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js'
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js'
import {
  ConfigInvalid,
  createVerifier,
  parseManifest,
  resolveMode,
  ScopeInvalid,
  ToolDeclarationSchema,
  ToolUndeclared,
  Verifier,
} from 'agent-trust'
import { hashArguments, refusedEvent, ToolCatalog, toAgentTrustError } from '#internal'
import type {
  AgentTrustError,
  AuditLog,
  EnforcementMode,
  Manifest,
  ManifestInput,
  PeerIdentity,
  ReplayRevocationStore,
  Requirement,
  ResolvedTool,
  ToolDeclaration,
  TrustedIssuer,
  TrustLevel,
  VerifiedCapability,
} from 'agent-trust'
import {
  AUDIENCE_CAPABILITY_KEY,
  CAPABILITY_DENIED,
  CAPABILITY_HEADER,
  CAPABILITY_META_KEY,
  mayCall,
  methodOperation,
  methodScope,
  TOOL_OPERATION_META_KEY,
  TOOL_SCOPE_META_KEY,
  UNGUARDED_METHODS,
} from './policy.js'
import { mtlsPeerIdentity, proveSession, SESSION_AUTH_KEY } from './peer.js'
import { assertV2Dispatch, isV2Protocol, stripV2Context, v2HeaderToken } from './server-v2.js'
import type { McpRequestContextV2 } from './server-v2.js'

/** What the SDK passes a request handler as its second argument (SDK 1.x). */
export type McpRequestExtra = RequestHandlerExtra<ServerRequest, ServerNotification>
export type { McpRequestContextV2 }

export interface GuardMcpServerOptions {
  /**
   * A ready verifier; its `id` is this server's id (the `aud` tokens must carry) and its
   * `mode` applies. Give either this, or `serverId` + `issuers` (and optionally `store`,
   * `clockToleranceSeconds`, `mode`) and the guard builds one.
   */
  readonly verifier?: Verifier
  /** This server's agent id in the manifest: the audience of the tokens it accepts. */
  readonly serverId?: string
  /** Authorities whose keys are trusted (when no `verifier` is given). */
  readonly issuers?: readonly TrustedIssuer[]
  /** Replay/revocation store shared with the authority (when no `verifier` is given). Default: in-memory. */
  readonly store?: ReplayRevocationStore
  /** Clock tolerance in seconds (when no `verifier` is given). Default 5, max 30. */
  readonly clockToleranceSeconds?: number
  /**
   * The manifest. The server's own entry (`agents[id === serverId]`) declares its tools'
   * operations and scope templates; the other entries give the callers' grants and levels,
   * so `tools/list` shows each caller only the tools it may call, and (when the guard builds
   * the verifier) a caller's level there caps its token's.
   */
  readonly manifest?: Manifest | ManifestInput
  /** Tool declarations to use instead of the manifest entry's `tools`. */
  readonly tools?: readonly ToolDeclaration[]
  /** Where decisions are recorded. Default: the verifier's own log. */
  readonly audit?: AuditLog
  /** `enforce` (default, or `AGENT_TRUST`), `audit` or `off` (when no `verifier` is given). */
  readonly mode?: EnforcementMode
  /**
   * The authenticated peer of the connection (an mTLS certificate's agent id and
   * thumbprint), when the transport knows it. The token's presenter must be that peer, and
   * a certificate-bound token must match its certificate (`ERR_TOKEN_BINDING`). A hook that
   * throws denies the call with the error's code. Default {@link mtlsPeerIdentity}: the peer
   * `serveStreamableHttp({ tls })` (or {@link attachPeerIdentity}) attached to the request,
   * if any; {@link requireMtlsPeerIdentity} also denies requests that have none.
   */
  peerIdentity?(extra: McpRequestExtra | McpRequestContextV2): PeerIdentity | undefined | Promise<PeerIdentity | undefined>
  /**
   * Accept the token from the `Agent-Trust-Capability` HTTP header when `params._meta`
   * carries none (Streamable HTTP only). Default `true`.
   */
  readonly acceptHeader?: boolean
  /**
   * Tools to hide from `tools/list` and refuse with `ERR_TOOL_UNDECLARED` (the gateway
   * withholds tools whose definition is not the pinned one). Called per request.
   */
  readonly withheld?: (tool: string) => boolean
  /**
   * Return the server's `instructions` in the `initialize` result. `initialize` carries no
   * token, so whatever it returns goes to any peer that can connect. Default `false`: the
   * field is dropped (free text that reaches a model unauthenticated).
   */
  readonly initializeInstructions?: boolean
}

type Meta = Record<string, unknown>
interface RawRequest {
  readonly method: string
  readonly params?: { readonly _meta?: Meta; readonly [key: string]: unknown }
  readonly [key: string]: unknown
}
type RawHandler = (request: RawRequest, extra: McpRequestExtra) => Promise<unknown>

interface Caller {
  readonly grants: readonly string[]
  readonly level: TrustLevel
}

interface GuardContext {
  readonly serverId: string
  readonly verifier: Verifier
  readonly mode: EnforcementMode
  readonly audit: AuditLog
  /** This server's tools, compiled at set-up; undeclared ones resolve to `execute` / `tool:<server>:<name>`. */
  readonly catalog: ToolCatalog
  readonly callers: ReadonlyMap<string, Caller> | undefined
  readonly peerIdentity: GuardMcpServerOptions['peerIdentity']
  readonly acceptHeader: boolean
  readonly withheld: ((tool: string) => boolean) | undefined
  readonly initializeInstructions: boolean
  /** How this SDK major hands the handler the HTTP layer. */
  readonly host: HostDialect
}

/** Where the handler context of one SDK major keeps the header token, and how to strip it. */
interface HostDialect {
  header(extra: McpRequestExtra): unknown
  strip(extra: McpRequestExtra): McpRequestExtra
}

const V1_HOST: HostDialect = {
  header: (extra) => {
    const h = extra?.requestInfo?.headers?.[CAPABILITY_HEADER]
    // Several header lines are ambiguous: hand the array over, the verifier rejects it as malformed.
    return Array.isArray(h) && h.length === 1 ? h[0] : h
  },
  strip: (extra) => stripExtra(extra),
}

// The v2 context travels through the same code typed as the v1 extra; only these two read it.
const V2_HOST: HostDialect = {
  header: (extra) => v2HeaderToken(extra as unknown as McpRequestContextV2),
  strip: (extra) => stripV2Context(extra as unknown as McpRequestContextV2) as unknown as McpRequestExtra,
}

const kGuarded = Symbol.for('agent-trust.mcp.guarded')

/** The SDK's protocol object under an `McpServer` or a `Server`, with the internals the guard relies on. */
interface ProtocolInternals {
  _requestHandlers?: unknown
  fallbackRequestHandler?: RawHandler
  transport?: unknown
  registerCapabilities?: (capabilities: Record<string, unknown>) => void
  [kGuarded]?: true
}

/**
 * Turn capability enforcement on for an `McpServer` or a low-level `Server`, before or
 * after its tools are registered, before or after it is connected.
 *
 * - `tools/call` needs a token whose `aud` is this server and whose scope is the one the
 *   tool's declared template yields for the call's arguments; undeclared tools are
 *   `execute` with scope `tool:<serverId>:<name>`.
 * - Every other request except `initialize` and `ping` needs a token with scope
 *   `mcp:<serverId>:<method>` (`tools/list` is a `read`); with a manifest, `tools/list`
 *   shows the caller only the tools it may call.
 * - The token is read from `params._meta["io.agent-trust/capability"]`, or on Streamable
 *   HTTP from the `Agent-Trust-Capability` header; it is removed from the request before
 *   the handler sees it.
 * - Every decision, allow or deny, is an audit event.
 *
 * Returns the server it was given. Throws `TypeError`/`ERR_CONFIG_INVALID` on bad options
 * or an SDK it cannot guard (it never runs unguarded silently).
 *
 * @example
 * ```ts
 * import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
 * import { guardMcpServer } from 'agent-trust/mcp'
 *
 * const server = new McpServer({ name: 'agent-database-reader', version: '1.0.0' })
 * server.registerTool('read_documents', { inputSchema: { namespace: z.string() } }, readDocuments)
 * guardMcpServer(server, { serverId: 'agent-database-reader', issuers: [{ issuer: 'agent-trust-authority', jwks }], manifest })
 * await server.connect(transport)
 * ```
 */
export function guardMcpServer<T extends McpServer | Server | McpServerV2 | ServerV2>(target: T, options: GuardMcpServerOptions): T {
  const protocol = protocolOf(target)
  if (protocol[kGuarded] === true) throw new TypeError('guardMcpServer: this server is already guarded')
  const v2 = isV2Protocol(protocol)
  if (v2) assertV2Dispatch(protocol)
  const handlers = protocol._requestHandlers
  if (!(handlers instanceof Map)) {
    // The request-handler table is an SDK internal (stable across 1.x). Refuse rather than run unguarded.
    throw new TypeError(
      'guardMcpServer: unsupported @modelcontextprotocol/sdk version (no request handler table); the server was not started unguarded',
    )
  }
  const ctx = buildContext(options, v2 ? V2_HOST : V1_HOST)

  const table = new GuardedHandlers((method, handler) => guardHandler(ctx, method, handler))
  for (const [method, handler] of handlers as Map<string, RawHandler>) table.set(method, handler)
  protocol._requestHandlers = table

  let fallback = wrapFallback(ctx, protocol.fallbackRequestHandler)
  Object.defineProperty(protocol, 'fallbackRequestHandler', {
    configurable: true,
    enumerable: true,
    get: () => fallback,
    set: (h: RawHandler | undefined) => {
      fallback = wrapFallback(ctx, h)
    },
  })

  // Advertise the audience so a client wrapper bound to another server id refuses early.
  // Capabilities can only change before connect(); a server guarded later just does not advertise.
  if (protocol.transport === undefined && typeof protocol.registerCapabilities === 'function') {
    protocol.registerCapabilities({ experimental: { [AUDIENCE_CAPABILITY_KEY]: { audience: ctx.serverId, metaKey: CAPABILITY_META_KEY } } })
  }
  protocol[kGuarded] = true
  return target
}

/** A handler table that wraps every handler stored in it, whenever it is stored. */
class GuardedHandlers extends Map<string, RawHandler> {
  readonly #wrap: (method: string, handler: RawHandler) => RawHandler
  constructor(wrap: (method: string, handler: RawHandler) => RawHandler) {
    super()
    this.#wrap = wrap
  }
  override set(method: string, handler: RawHandler): this {
    return super.set(method, this.#wrap(method, handler))
  }
}

function protocolOf(target: McpServer | Server | McpServerV2 | ServerV2): ProtocolInternals {
  if (typeof target !== 'object' || target === null) throw new TypeError('guardMcpServer: expected an McpServer or a Server')
  // Duck-typed: an app and agent-trust may load different copies of the SDK.
  const inner = (target as { server?: unknown }).server
  if (typeof (target as { registerTool?: unknown }).registerTool === 'function' && typeof inner === 'object' && inner !== null) {
    return inner as ProtocolInternals
  }
  return target as unknown as ProtocolInternals
}

function buildContext(o: GuardMcpServerOptions, host: HostDialect): GuardContext {
  if (typeof o !== 'object' || o === null) throw new TypeError('guardMcpServer: options are required')
  let verifier: Verifier
  if (o.verifier !== undefined) {
    if (!(o.verifier instanceof Verifier)) throw new TypeError('guardMcpServer: "verifier" must be a Verifier (createVerifier)')
    if (o.serverId !== undefined && o.serverId !== o.verifier.id)
      throw new TypeError('guardMcpServer: "serverId" differs from the verifier\'s id')
    if (o.issuers !== undefined || o.store !== undefined || o.clockToleranceSeconds !== undefined) {
      throw new TypeError('guardMcpServer: give either "verifier" or "issuers"/"store"/"clockToleranceSeconds", not both')
    }
    if (o.mode !== undefined && o.mode !== o.verifier.mode) throw new TypeError('guardMcpServer: "mode" differs from the verifier\'s mode')
    verifier = o.verifier
  } else {
    if (typeof o.serverId !== 'string' || o.serverId.length === 0)
      throw new TypeError('guardMcpServer: "serverId" (or a "verifier") is required')
    if (!Array.isArray(o.issuers) || o.issuers.length === 0) throw new TypeError('guardMcpServer: "issuers" (or a "verifier") is required')
    verifier = createVerifier({
      id: o.serverId,
      issuers: o.issuers,
      store: o.store,
      clockToleranceSeconds: o.clockToleranceSeconds,
      manifest: o.manifest,
      audit: o.audit,
      mode: resolveMode(o.mode),
    })
  }
  const serverId = verifier.id
  const manifest = o.manifest === undefined ? undefined : parseManifest(o.manifest)
  let declarations: readonly ToolDeclaration[] = []
  if (manifest !== undefined) {
    const self = manifest.agents.find((a) => a.id === serverId)
    if (self === undefined)
      throw new ConfigInvalid(`the manifest has no agent "${serverId}" (this server's id)`, { details: { agentId: serverId } })
    declarations = self.tools
  }
  if (o.tools !== undefined) declarations = parseTools(o.tools)
  const catalog = new ToolCatalog(serverId, declarations)
  const callers =
    manifest === undefined ? undefined : new Map(manifest.agents.map((a) => [a.id, { grants: a.grants, level: a.trustLevel }] as const))
  if (o.peerIdentity !== undefined && typeof o.peerIdentity !== 'function')
    throw new TypeError('guardMcpServer: "peerIdentity" must be a function')
  if (o.withheld !== undefined && typeof o.withheld !== 'function') throw new TypeError('guardMcpServer: "withheld" must be a function')
  return {
    serverId,
    verifier,
    mode: verifier.mode,
    audit: o.audit ?? verifier.audit,
    catalog,
    callers,
    // The default reads only a peer our own host attached (branded); without one it is undefined.
    peerIdentity: o.peerIdentity ?? mtlsPeerIdentity,
    acceptHeader: o.acceptHeader ?? true,
    withheld: o.withheld,
    initializeInstructions: o.initializeInstructions === true,
    host,
  }
}

function parseTools(tools: readonly ToolDeclaration[]): ToolDeclaration[] {
  if (!Array.isArray(tools)) throw new ConfigInvalid('"tools" must be an array of tool declarations')
  const out: ToolDeclaration[] = []
  const names = new Set<string>()
  tools.forEach((t, i) => {
    const r = ToolDeclarationSchema.safeParse(t, { reportInput: false })
    if (!r.success)
      throw new ConfigInvalid(
        `tools[${i}] is not a valid tool declaration: ${r.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`,
      )
    if (names.has(r.data.name)) throw new ConfigInvalid(`tools[${i}].name duplicates another tool`)
    names.add(r.data.name)
    out.push(r.data)
  })
  return out
}

/**
 * A denial thrown from a request handler. Both SDK majors answer a thrown error with its
 * integer `code`, its `message` and its `data` as the JSON-RPC error, so this class needs
 * neither SDK loaded.
 */
export class CapabilityDeniedError extends Error {
  /** JSON-RPC `error.code`: {@link CAPABILITY_DENIED}. */
  readonly code: number = CAPABILITY_DENIED
  /** JSON-RPC `error.data`: the agent-trust code, its details and the scope the call needed. */
  readonly data: { readonly code: string; readonly details?: unknown; readonly scope?: string }
  constructor(message: string, data: { readonly code: string; readonly details?: unknown; readonly scope?: string }) {
    super(message)
    this.name = 'CapabilityDeniedError'
    this.data = data
  }
}

/** The JSON-RPC error a denial becomes: stable code in `data.code`, never the token. */
export function capabilityDenied(error: AgentTrustError, requiredScope?: string): CapabilityDeniedError {
  // The scope the call needed rides along for the HTTP host's `insufficient_scope` challenge (RFC 6750 section 3.1).
  return new CapabilityDeniedError(error.message, {
    code: error.code,
    details: error.details,
    ...(requiredScope === undefined ? {} : { scope: requiredScope }),
  })
}

function wrapFallback(ctx: GuardContext, handler: RawHandler | undefined): RawHandler | undefined {
  if (handler === undefined) return undefined
  return function agentTrustGuardFallback(request, extra) {
    if (UNGUARDED_METHODS.has(request?.method)) return handler(request, extra)
    return guardHandler(ctx, String(request?.method), handler)(request, extra)
  }
}

function guardHandler(ctx: GuardContext, method: string, inner: RawHandler): RawHandler {
  if (method === 'initialize' && !ctx.initializeInstructions) {
    return async function withoutInstructions(request, extra) {
      const result = await inner(request, extra)
      if (typeof result !== 'object' || result === null || !('instructions' in result)) return result
      const { instructions: _dropped, ...rest } = result as Record<string, unknown>
      return rest
    }
  }
  if (UNGUARDED_METHODS.has(method)) return inner
  if (method === 'tools/call') return guardToolCall(ctx, inner)
  const scope = methodScope(ctx.serverId, method)
  const operation = methodOperation(method)
  const filterList = method === 'tools/list'
  return async function agentTrustGuard(request, extra) {
    if (ctx.mode === 'off') return inner(stripRequest(request), ctx.host.strip(extra))
    let capability: VerifiedCapability | undefined
    let verifying = false
    try {
      if (scope === undefined)
        throw new ScopeInvalid(`method "${method.slice(0, 64)}" cannot form a scope`, { details: { rule: 'method' } })
      const peer = await peerOf(ctx, extra)
      verifying = true
      capability = await authorize(ctx, request, extra, { scope, operation, peer })
    } catch (e) {
      deny(ctx, e, !verifying, { scope })
    }
    const result = await inner(stripRequest(request), ctx.host.strip(extra))
    if (!filterList) return result
    return advertiseScopes(ctx, ctx.mode === 'enforce' && capability !== undefined ? filterTools(ctx, result, capability) : result)
  }
}

function guardToolCall(ctx: GuardContext, inner: RawHandler): RawHandler {
  return async function agentTrustGuardToolCall(request, extra) {
    if (ctx.mode === 'off') return inner(stripRequest(request), ctx.host.strip(extra))
    const params = request?.params ?? {}
    const name = params.name
    const rawArgs = params.arguments
    const args =
      typeof rawArgs === 'object' && rawArgs !== null && !Array.isArray(rawArgs) ? (rawArgs as Record<string, unknown>) : undefined
    let scope: string | undefined
    let verifying = false
    try {
      if (typeof name !== 'string' || name.length === 0 || name.length > 128)
        throw new ToolUndeclared('tools/call needs a tool name of 1-128 characters', { details: { rule: 'tool-name' } })
      if (ctx.withheld?.(name) === true) {
        throw new ToolUndeclared(`tool "${name}" is withheld: its definition is not the approved one`, {
          details: { rule: 'definition-pin' },
        })
      }
      const tool = resolve(ctx, name)
      scope = tool.scope.fill(args)
      const peer = await peerOf(ctx, extra)
      verifying = true
      await authorize(ctx, request, extra, { scope, operation: tool.operation, tool: name, args, peer })
    } catch (e) {
      deny(ctx, e, !verifying, { tool: typeof name === 'string' ? name.slice(0, 128) : undefined, scope, args })
    }
    return inner(stripRequest(request), ctx.host.strip(extra))
  }
}

/** Throws `ERR_SCOPE_INVALID` for an undeclared name that cannot be a scope segment. */
function resolve(ctx: GuardContext, name: string): ResolvedTool {
  return ctx.catalog.resolve(name)
}

async function peerOf(ctx: GuardContext, extra: McpRequestExtra): Promise<PeerIdentity | undefined> {
  return ctx.peerIdentity === undefined ? undefined : await ctx.peerIdentity(extra)
}

/**
 * Verify under the mode (the verifier records the decision). Resolves with the capability
 * (enforce: always; audit: when it verified); rejects with a coded error only in `enforce`.
 */
async function authorize(
  ctx: GuardContext,
  request: RawRequest,
  extra: McpRequestExtra,
  req: Requirement,
): Promise<VerifiedCapability | undefined> {
  const r = await ctx.verifier.authorize(tokenOf(ctx, request, extra), req)
  // A verified capability (not an audit-mode pass): the host stops counting the session as token-less.
  if (r.allowed && r.capability !== undefined) proveSession(extra)
  return r.allowed ? r.capability : undefined
}

/**
 * A denial. The verifier records its own; one raised before verification (withheld tool,
 * an argument that cannot form a scope, the peer hook) is recorded here. In `enforce` it
 * becomes the JSON-RPC error; in `audit` the call proceeds.
 */
function deny(ctx: GuardContext, e: unknown, record: boolean, info: { tool?: string; scope?: string; args?: unknown }): void {
  const err = toAgentTrustError(e)
  if (record) {
    ctx.audit.record(
      refusedEvent('tool_call', err.code, {
        destination: ctx.serverId,
        capability: info.scope === undefined ? undefined : [info.scope],
        tool: info.tool,
        argsHash: hashArguments(info.args),
        enforced: ctx.mode === 'enforce',
      }),
    )
  }
  if (ctx.mode === 'enforce') throw capabilityDenied(err, info.scope)
}

function tokenOf(ctx: GuardContext, request: RawRequest, extra: McpRequestExtra): unknown {
  const meta = request?.params?._meta
  if (typeof meta === 'object' && meta !== null && Object.prototype.hasOwnProperty.call(meta, CAPABILITY_META_KEY))
    return meta[CAPABILITY_META_KEY]
  if (!ctx.acceptHeader) return undefined
  return ctx.host.header(extra)
}

/**
 * The request without our token, so a handler can never forward it to another server. The
 * token is removed from the request object itself: the SDK keeps that object for what it
 * hands on besides the handler's arguments (`extra.taskStore.createTask` persists its
 * `params`, `extra._meta` is its `_meta`), and a durable task store would keep a live token.
 */
function stripRequest(request: RawRequest): RawRequest {
  const meta = request?.params?._meta
  if (typeof meta !== 'object' || meta === null || !Object.prototype.hasOwnProperty.call(meta, CAPABILITY_META_KEY)) return request
  if (Object.isFrozen(meta) || !Reflect.deleteProperty(meta, CAPABILITY_META_KEY)) {
    const { [CAPABILITY_META_KEY]: _token, ...rest } = meta
    return { ...request, params: { ...request.params, _meta: rest } }
  }
  return request
}

function stripExtra(extra: McpRequestExtra): McpRequestExtra {
  let out = extra
  const meta = extra?._meta as Meta | undefined
  if (typeof meta === 'object' && meta !== null && Object.prototype.hasOwnProperty.call(meta, CAPABILITY_META_KEY)) {
    const { [CAPABILITY_META_KEY]: _token, ...rest } = meta
    out = { ...out, _meta: rest }
  }
  const headers = extra?.requestInfo?.headers
  if (headers !== undefined && Object.prototype.hasOwnProperty.call(headers, CAPABILITY_HEADER)) {
    const { [CAPABILITY_HEADER]: _token, ...rest } = headers
    out = { ...out, requestInfo: { ...extra.requestInfo, headers: rest } }
  }
  const authExtra = extra?.authInfo?.extra
  if (authExtra !== undefined && Object.prototype.hasOwnProperty.call(authExtra, SESSION_AUTH_KEY)) {
    // The host's session hook is for the guard only.
    const { [SESSION_AUTH_KEY]: _hook, ...rest } = authExtra
    out = { ...out, authInfo: { ...(extra.authInfo as NonNullable<McpRequestExtra['authInfo']>), extra: rest } }
  }
  return out
}

/** Each `Tool` entry names the scope template and operation a call needs, under `_meta` ({@link TOOL_SCOPE_META_KEY}). */
function advertiseScopes(ctx: GuardContext, result: unknown): unknown {
  const tools = (result as { tools?: unknown })?.tools
  if (!Array.isArray(tools)) return result
  const advertised = tools.map((t: { name?: unknown; _meta?: unknown }) => {
    if (typeof t?.name !== 'string') return t
    let tool: ResolvedTool
    try {
      tool = resolve(ctx, t.name)
    } catch {
      return t
    }
    const meta = typeof t._meta === 'object' && t._meta !== null ? t._meta : {}
    return { ...t, _meta: { ...meta, [TOOL_SCOPE_META_KEY]: tool.scope.source, [TOOL_OPERATION_META_KEY]: tool.operation } }
  })
  return { ...(result as object), tools: advertised }
}

/** `tools/list` shows only the tools this caller may call (and never a withheld one). */
function filterTools(ctx: GuardContext, result: unknown, capability: VerifiedCapability): unknown {
  const tools = (result as { tools?: unknown })?.tools
  if (!Array.isArray(tools)) return result
  const caller = ctx.callers?.get(capability.presenter)
  const visible = tools.filter((t: { name?: unknown }) => {
    if (typeof t?.name !== 'string') return false
    if (ctx.withheld?.(t.name) === true) return false
    if (ctx.callers === undefined) return true
    // A manifest that does not know the caller shows it nothing.
    if (caller === undefined) return false
    let tool: ResolvedTool
    try {
      tool = resolve(ctx, t.name)
    } catch {
      return false
    }
    return mayCall(caller.grants, capability.trustLevel, tool)
  })
  return { ...(result as object), tools: visible }
}
