/**
 * Who is calling: the agent identity a LangChain run carries in its runtime `context`.
 *
 * Why `context` and nothing else:
 * - `configurable` plain values are copied into trace metadata (`@langchain/core`
 *   `_getTracingInheritableMetadataFromConfig`), and anything in it is merged into every
 *   nested runnable, so it is the wrong place for an identity;
 * - `metadata.lc_agent_name` names the innermost *LangChain* agent, and a parent's
 *   name wins there when a child runs inside a tool: it is a label, not an identity;
 * - `context` is what the application passes to `agent.invoke(input, { context })`. The
 *   model cannot write it, and LangGraph hands it to every node and tool unchanged.
 *
 * Subpath: `agent-trust/langchain`.
 */
import { AsyncLocalStorageProviderSingleton } from '@langchain/core/singletons'
import { parseOptions } from '#internal'
import { z } from 'zod'

/** The key under which the caller sits in the runtime context. */
export const AGENT_TRUST_CONTEXT_KEY = 'agentTrust'

/**
 * The calling agent and the audit context copied into every token it gets
 * (the `context` claim).
 */
export interface AgentTrustCaller {
  /** The agent's id in the manifest (`agent-summarizer-v2`). */
  readonly agentId: string
  readonly session_id: string
  readonly user_id: string
  readonly task_id: string
}

/** The runtime-context shape this module reads: merge it into your agent's `contextSchema` type. */
export interface AgentTrustRunContext {
  readonly [AGENT_TRUST_CONTEXT_KEY]: AgentTrustCaller
}

const MAX_ID = 255
const MAX_CONTEXT_VALUE = 256

/** `agentTrustContext(caller, extra)`: the caller exactly; `extra` is the application's own context, kept as given. */
const ContextArgs = z.strictObject({
  caller: z.strictObject({
    agentId: z.string().min(1).max(MAX_ID),
    session_id: z.string().max(MAX_CONTEXT_VALUE),
    user_id: z.string().max(MAX_CONTEXT_VALUE),
    task_id: z.string().max(MAX_CONTEXT_VALUE),
  }),
  extra: z.looseObject({}).optional(),
})

/**
 * Build the runtime context for `agent.invoke(input, { context })`: your own context fields
 * plus the frozen caller under {@link AGENT_TRUST_CONTEXT_KEY}.
 *
 * @example
 * ```ts
 * await agent.invoke({ messages }, {
 *   context: agentTrustContext({ agentId: 'agent-summarizer-v2', session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }),
 * })
 * ```
 */
export function agentTrustContext<T extends Record<string, unknown> = Record<never, never>>(
  caller: AgentTrustCaller,
  extra?: T,
): T & AgentTrustRunContext {
  parseOptions('agentTrustContext', ContextArgs, { caller, extra })
  const checked = callerFromContext({ [AGENT_TRUST_CONTEXT_KEY]: caller }) as AgentTrustCaller
  return { ...(extra ?? ({} as T)), [AGENT_TRUST_CONTEXT_KEY]: checked }
}

/**
 * Read the caller from a runtime context. Pure. `undefined` when it is absent or malformed:
 * callers of this function deny in that case, they never guess an identity.
 */
export function callerFromContext(context: unknown): AgentTrustCaller | undefined {
  if (typeof context !== 'object' || context === null) return undefined
  const raw = (context as Record<string, unknown>)[AGENT_TRUST_CONTEXT_KEY]
  if (typeof raw !== 'object' || raw === null) return undefined
  const { agentId, session_id, user_id, task_id } = raw as Record<string, unknown>
  if (typeof agentId !== 'string' || agentId.length === 0 || agentId.length > MAX_ID) return undefined
  for (const v of [session_id, user_id, task_id]) {
    if (typeof v !== 'string' || v.length > MAX_CONTEXT_VALUE) return undefined
  }
  return Object.freeze({ agentId, session_id: session_id as string, user_id: user_id as string, task_id: task_id as string })
}

/**
 * Run `fn` outside the current LangChain run's implicit config.
 *
 * `@langchain/core` keeps the running config in an AsyncLocalStorage; `ensureConfig` and
 * LangGraph's `ensureLangGraphConfig` merge it (including `context`, `configurable` and
 * `metadata`) into any runnable invoked inside a tool. A sub-agent started there would
 * silently run as its parent. Clearing the store makes the child a root run that sees only
 * the config it is given explicitly.
 */
export function runIsolated<T>(fn: () => Promise<T>): Promise<T> {
  const storage = AsyncLocalStorageProviderSingleton.getInstance()
  return storage.run(undefined, fn) as Promise<T>
}
