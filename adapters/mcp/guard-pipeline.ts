/**
 * The guard's per-request pipeline: which handlers need a capability, where the token is
 * read (params._meta or the capability header), the verifier's decision, the denial as a
 * JSON-RPC error, and what the inner handler may see (never the token).
 */
import { ScopeInvalid, ToolUndeclared } from 'agent-trust'
import { hashArguments, refusedEvent, toAgentTrustError } from '#internal'
import type { AgentTrustError, PeerIdentity, Requirement, ResolvedTool, VerifiedCapability } from 'agent-trust'
import {
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
import { proveSession, SESSION_AUTH_KEY } from './peer.js'
import { stripV2Context, v2HeaderToken } from './server-v2.js'
import type { McpRequestContextV2 } from './server-v2.js'
import type { GuardContext, HostDialect, McpRequestExtra, Meta, RawHandler, RawRequest } from './guard-context.js'

export const V1_HOST: HostDialect = {
  header: (extra) => {
    const h = extra?.requestInfo?.headers?.[CAPABILITY_HEADER]
    // Several header lines are ambiguous: hand the array over, the verifier rejects it as malformed.
    return Array.isArray(h) && h.length === 1 ? h[0] : h
  },
  strip: (extra) => stripExtra(extra),
}

// The v2 context travels through the same code typed as the v1 extra; only these two read it.
export const V2_HOST: HostDialect = {
  header: (extra) => v2HeaderToken(extra as unknown as McpRequestContextV2),
  strip: (extra) => stripV2Context(extra as unknown as McpRequestContextV2) as unknown as McpRequestExtra,
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

export function wrapFallback(ctx: GuardContext, handler: RawHandler | undefined): RawHandler | undefined {
  if (handler === undefined) return undefined
  return function agentTrustGuardFallback(request, extra) {
    if (UNGUARDED_METHODS.has(request?.method)) return handler(stripRequest(request), ctx.host.strip(extra))
    return guardHandler(ctx, String(request?.method), handler)(request, extra)
  }
}

export function guardHandler(ctx: GuardContext, method: string, inner: RawHandler): RawHandler {
  if (method === 'initialize' && !ctx.initializeInstructions) {
    return async function withoutInstructions(request, extra) {
      const result = await inner(stripRequest(request), ctx.host.strip(extra))
      if (typeof result !== 'object' || result === null || !('instructions' in result)) return result
      const { instructions: _dropped, ...rest } = result as Record<string, unknown>
      return rest
    }
  }
  // Needs no capability, but a token sent along (in _meta, or the header) is still never the handler's to see.
  if (UNGUARDED_METHODS.has(method)) return (request, extra) => inner(stripRequest(request), ctx.host.strip(extra))
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
      const hooked = peerOf(ctx, extra)
      const peer = isPromiseLike(hooked) ? await hooked : hooked
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

export function guardToolCall(ctx: GuardContext, inner: RawHandler): RawHandler {
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
      const hooked = peerOf(ctx, extra)
      const peer = isPromiseLike(hooked) ? await hooked : hooked
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

/** The hook's answer; awaited only when it is a promise (the default hook answers at once). */
function peerOf(ctx: GuardContext, extra: McpRequestExtra): PeerIdentity | undefined | PromiseLike<PeerIdentity | undefined> {
  return ctx.peerIdentity === undefined ? undefined : ctx.peerIdentity(extra)
}

function isPromiseLike<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function'
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
