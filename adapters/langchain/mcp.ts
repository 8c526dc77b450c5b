/**
 * MCP tools in a LangChain agent, loaded with `@langchain/mcp-adapters` from a server
 * guarded by `guardMcpServer` (`agent-trust/mcp`).
 *
 * The check happens at the MCP server; this side makes each `tools/call` carry a fresh token
 * minted for the agent named in the *LangChain run's* runtime `context` (not a fixed client
 * identity), and turns the server's coded verdict back into a coded error for the agent.
 *
 * How: {@link guardMcpClient} wraps the SDK `Client` with `withCapabilities` (the wire format
 * of `agent-trust/mcp`) through an issuer that takes the subject from the guarded call in
 * progress; {@link guardMcpTools} wraps the loaded tools so that each call runs as that
 * guarded call. The token travels only inside the request (`params._meta`), never in config.
 *
 * Subpath: `agent-trust/langchain`. Needs `@modelcontextprotocol/sdk` (loaded on first use).
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { StructuredToolInterface } from '@langchain/core/tools'
import {
  ConfigInvalid,
  errorFromCode,
  isAgentTrustError,
  TokenMissing,
  type AgentTrustError,
  type AuditContext,
  type CapabilityIssuer,
  type ErrorDetails,
} from 'agent-trust'
import { AGENT_TRUST_CONTEXT_KEY, callerFromContext, type AgentTrustCaller } from './context.js'
import { assertGuardable, interpose, markSelfGuarded } from './guard.js'

/** JSON-RPC `error.code` of a guarded MCP server's denial (`CAPABILITY_DENIED` in `agent-trust/mcp`). */
const CAPABILITY_DENIED = -32003

interface CallState {
  readonly caller: AgentTrustCaller
  /** The coded verdict of this call's request, when it was a capability denial. */
  verdict?: AgentTrustError
}

interface Bridge {
  readonly serverId: string
  readonly calls: AsyncLocalStorage<CallState>
}

const bridges = new WeakMap<object, Bridge>()

export interface GuardMcpClientOptions {
  /** Mints the tokens (the in-process `Authority` or a remote `CapabilityIssuer`). */
  readonly authority: CapabilityIssuer
  /** The MCP server's agent id in the manifest: every token's `aud`. */
  readonly serverId: string
  /**
   * The agent that lists the server's tools (`tools/list` at load time) and makes any other
   * request outside a guarded tool call. `tools/call` is never made as this agent: outside a
   * guarded call it is refused.
   */
  readonly listAs: string
  /** Audit context of the requests made as `listAs`. Default: empty ids with session `agent-trust-setup`. */
  readonly listContext?: AuditContext
  /** Token lifetime in seconds. Default: the authority's (60). */
  readonly ttlSeconds?: number
}

function auditContextOf(c: AgentTrustCaller): AuditContext {
  return { session_id: c.session_id, user_id: c.user_id, task_id: c.task_id }
}

/** A guarded server's JSON-RPC denial, or the authority's coded refusal, as a coded error. */
function verdictOf(error: unknown): AgentTrustError | undefined {
  if (isAgentTrustError(error)) return error
  const e = error as { code?: unknown; message?: unknown; data?: { code?: unknown; details?: unknown } } | null
  if (e?.code !== CAPABILITY_DENIED || typeof e.data?.code !== 'string' || !e.data.code.startsWith('ERR_')) return undefined
  const details: Record<string, string | number | boolean> = {}
  if (typeof e.data.details === 'object' && e.data.details !== null) {
    for (const [k, v] of Object.entries(e.data.details))
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') details[k] = v
  }
  const message = typeof e.message === 'string' ? e.message.replace(/^MCP error -?\d+: /, '') : undefined
  return errorFromCode(e.data.code, message, details as ErrorDetails)
}

/**
 * Prepare an MCP SDK `Client` (before `connect`) for guarded LangChain tool calls. Returns
 * the same client.
 *
 * @example
 * ```ts
 * const client = await guardMcpClient(new Client({ name: 'agents', version: '1.0.0' }), {
 *   authority, serverId: 'agent-database-reader', listAs: 'agent-orchestrator' })
 * await client.connect(transport)
 * const tools = guardMcpTools(await loadMcpTools('db', client), { client })
 * ```
 */
export async function guardMcpClient<C extends object>(client: C, options: GuardMcpClientOptions): Promise<C> {
  const {
    authority,
    serverId,
    listAs,
    listContext = { session_id: 'agent-trust-setup', user_id: '', task_id: '' },
    ttlSeconds,
  } = options ?? ({} as GuardMcpClientOptions)
  if (typeof authority?.mintForTool !== 'function' || typeof authority.mint !== 'function')
    throw new ConfigInvalid('`authority` (a CapabilityIssuer) is required', { details: { rule: 'authority' } })
  if (typeof serverId !== 'string' || serverId.length === 0)
    throw new ConfigInvalid('`serverId` is required', { details: { rule: 'serverId' } })
  if (typeof listAs !== 'string' || listAs.length === 0)
    throw new ConfigInvalid('`listAs` (the agent that lists tools) is required', { details: { rule: 'listAs' } })
  if (typeof (client as { request?: unknown })?.request !== 'function')
    throw new ConfigInvalid('guardMcpClient: expected an MCP SDK Client', { details: { rule: 'client' } })
  if (bridges.has(client)) throw new ConfigInvalid('guardMcpClient: this client is already prepared', { details: { rule: 'client' } })
  // Loaded here so `agent-trust/langchain` does not need the MCP SDK unless MCP is used.
  const { withCapabilities } = await import('agent-trust/mcp')
  const calls = new AsyncLocalStorage<CallState>()

  const issuer: CapabilityIssuer = {
    async mint(request) {
      const call = calls.getStore()
      return authority.mint(
        call === undefined ? request : { ...request, subject: call.caller.agentId, context: auditContextOf(call.caller) },
      )
    },
    async mintForTool(request) {
      const call = calls.getStore()
      if (call === undefined) {
        throw new TokenMissing('an MCP tools/call outside a guarded LangChain tool call: wrap the loaded tools with guardMcpTools', {
          details: { rule: 'caller' },
        })
      }
      return authority.mintForTool({ ...request, subject: call.caller.agentId, context: auditContextOf(call.caller) })
    },
    exchange: (request) => authority.exchange(request),
    spawn: (request) => authority.spawn(request),
  }
  withCapabilities(client as never, {
    issuer,
    agentId: listAs,
    serverId,
    context: listContext,
    ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
  })

  // `@langchain/mcp-adapters` flattens any failure into a ToolException string, losing the
  // server's `data.code`; keep the coded verdict for the guarded call that is waiting for it.
  const target = client as unknown as { request: (...args: unknown[]) => Promise<unknown> }
  const send = target.request.bind(client)
  target.request = async function requestWithVerdict(...args: unknown[]): Promise<unknown> {
    try {
      return await send(...args)
    } catch (e) {
      const call = calls.getStore()
      if (call !== undefined) call.verdict = verdictOf(e)
      throw e
    }
  }
  bridges.set(client, { serverId, calls })
  return client
}

/**
 * Wrap tools loaded (with `loadMcpTools`) from a client prepared by {@link guardMcpClient}.
 * Each call runs as the agent in the runtime `context`; a denial, by the authority or by
 * the server, rejects with its coded error (the middleware then stops the run or tells the
 * model, per its mode). The tools count as guarded: `agentTrustMiddleware` does not wrap
 * them again.
 */
export function guardMcpTools(tools: readonly unknown[], options: { readonly client: object }): StructuredToolInterface[] {
  const bridge = bridges.get(options?.client as object)
  if (bridge === undefined)
    throw new ConfigInvalid('prepare the MCP client with guardMcpClient before loading its tools', { details: { rule: 'client' } })
  if (!Array.isArray(tools)) throw new ConfigInvalid('guardMcpTools takes the array loadMcpTools returned', { details: { rule: 'tools' } })
  return tools.map((t) => {
    assertGuardable(t)
    const guarded = interpose(t, async (arg, config, run) => {
      const caller = callerFromContext((config as { context?: unknown } | undefined)?.context)
      if (caller === undefined) {
        throw new TokenMissing(
          `no calling agent in the runtime context (key "${AGENT_TRUST_CONTEXT_KEY}"): nothing was sent to MCP server "${bridge.serverId}"`,
          { details: { rule: 'caller' } },
        )
      }
      const state: CallState = { caller }
      try {
        return await bridge.calls.run(state, () => run(arg))
      } catch (e) {
        throw state.verdict ?? e
      }
    })
    return markSelfGuarded(guarded)
  })
}
