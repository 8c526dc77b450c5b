/**
 * The agent's HTTP tool as a LangChain tool: the egress-guarded function from
 * `agent-trust/egress`, acting as whoever calls it. On every call the calling agent is read
 * from the run's `context` (`agentTrustContext`), and its trust level and declared
 * destinations from the authority at that moment: a tool list handed from a parent to a child
 * acts as the child, never as the agent that built it. No caller in the context, or an agent
 * the authority does not know (or has revoked), is refused. A refused request throws the
 * coded `EgressDenied` (`ERR_EGRESS_DENIED`, naming the host and the rule); a `createAgent`
 * ToolNode turns it into an error `ToolMessage` for the model.
 *
 * Subpath: `agent-trust/langchain/http` (kept apart so `agent-trust/langchain` does not need undici). Peer dependencies: `@langchain/core`, `undici`.
 *
 * @module agent-trust/langchain/http
 */
import { tool, type DynamicStructuredTool } from '@langchain/core/tools'
import { z } from 'zod'
import { EgressDenied, type TrustLevel } from 'agent-trust'
import { createHttpTool, type AgentCapabilityOptions, type HttpTool, type HttpToolOptions } from 'agent-trust/egress'
import { AGENT_TRUST_CONTEXT_KEY, callerFromContext, type AgentTrustCaller } from './context.js'
import { markSelfGuarded } from './guard.js'
import { fn, parseOptions, withMethods } from '#internal'

/** Where the tool looks the caller up on each call: the `Authority` (or anything with its `agent(id)`). */
export interface HttpToolDirectory {
  agent(id: string): Readonly<{ declaration: { readonly egress?: readonly string[] }; level: TrustLevel; revoked: boolean }> | undefined
}

export interface LangChainHttpToolOptions extends Omit<HttpToolOptions, 'agentId' | 'trustLevel' | 'egress' | 'capabilities'> {
  /** The authority: each call's agent, level and destinations are read from it. */
  readonly authority: HttpToolDirectory
  /**
   * Agent-to-agent tokens, minted for the calling agent (`subject`) with the caller's audit
   * context (`context`) from the run.
   */
  readonly capabilities?: Omit<AgentCapabilityOptions, 'subject' | 'context'>
  /** Tool name shown to the model. Default `http_request`. */
  readonly name?: string
  /** Tool description shown to the model. */
  readonly description?: string
}

const schema = z.object({
  url: z.string().max(8192).describe('Absolute http(s) URL. Only the destinations this agent declared are reachable.'),
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']).optional().describe('HTTP method; default GET.'),
  headers: z.record(z.string(), z.string()).optional().describe('Request headers.'),
  body: z.string().max(1_048_576).optional().describe('Request body as text.'),
})

/** A LangChain tool that also owns the HTTP connections it opened. */
export type LangChainHttpTool = DynamicStructuredTool<typeof schema> & {
  /** The guarded function acting as `agentId` (built on first use). */
  forAgent(caller: AgentTrustCaller): HttpTool
  close(): Promise<void>
}

/** At most this many callers keep an open per-agent dispatcher; the oldest is closed beyond it. */
const MAX_CALLERS = 64

function refuse(agentId: string | undefined, reason: string): EgressDenied {
  return new EgressDenied(`the HTTP tool refused the call: ${reason}`, {
    details: { rule: 'caller', ...(agentId === undefined ? {} : { agentId }) },
  })
}

/** {@link LangChainHttpToolOptions}: the HTTP tool's own options, less what each caller decides. */
const LangChainHttpToolOptionsSchema = z.strictObject({
  authority: withMethods<HttpToolDirectory>('agent'),
  capabilities: z.looseObject({}).optional(),
  name: z.string().min(1).optional(),
  description: z.string().optional(),
  // The HTTP tool's own options: their values are checked by createHttpTool for each caller.
  audit: withMethods('record').optional(),
  mode: z.string().optional(),
  resolver: fn().optional(),
  connect: z.looseObject({}).optional(),
  agentOptions: z.looseObject({}).optional(),
  maxRedirections: z.int().min(0).max(20).optional(),
  maxResponseBytes: z
    .int()
    .min(1)
    .max(64 * 1024 * 1024)
    .optional(),
  timeoutMs: z.int().min(1).max(600_000).optional(),
})

/**
 * @example
 * ```ts
 * const httpTool = createLangChainHttpTool({ authority })
 * const agent = createAgent({ model, tools: [httpTool], middleware: [agentTrustMiddleware({ authority, verifier })] })
 * await agent.invoke({ messages }, { context: agentTrustContext(caller) })
 * ```
 */
export function createLangChainHttpTool(options: LangChainHttpToolOptions): LangChainHttpTool {
  parseOptions('createLangChainHttpTool', LangChainHttpToolOptionsSchema, options)
  const { authority, capabilities, name, description, ...shared } = options
  const byCaller = new Map<string, { http: HttpTool }>()

  function forAgent(caller: AgentTrustCaller): HttpTool {
    const record = authority.agent(caller.agentId)
    if (record === undefined || record.revoked) throw refuse(caller.agentId, 'the calling agent is not registered or is revoked')
    const egress = [...(record.declaration.egress ?? [])]
    // One dispatcher per caller and audit context; a changed declaration builds a new one.
    const key = JSON.stringify([caller.agentId, caller.session_id, caller.user_id, caller.task_id, egress])
    const cached = byCaller.get(key)
    if (cached !== undefined) return cached.http
    if (byCaller.size >= MAX_CALLERS) {
      const [oldest, entry] = byCaller.entries().next().value as [string, { http: HttpTool }]
      byCaller.delete(oldest)
      void entry.http.close()
    }
    const http = createHttpTool({
      ...shared,
      agentId: caller.agentId,
      // Read on every request: an approved trust change (or a revocation) applies at once.
      trustLevel: () => {
        const now = authority.agent(caller.agentId)
        return now === undefined || now.revoked ? 'L0' : now.level
      },
      egress,
      ...(capabilities === undefined
        ? {}
        : {
            capabilities: {
              ...capabilities,
              subject: caller.agentId,
              context: { session_id: caller.session_id, user_id: caller.user_id, task_id: caller.task_id },
            },
          }),
    })
    byCaller.set(key, { http })
    return http
  }

  const t = tool(
    async (input, config) => {
      // Identity from the runtime context only; never `configurable`, never metadata.
      const caller = callerFromContext((config as { context?: unknown } | undefined)?.context)
      if (caller === undefined)
        throw refuse(
          undefined,
          `no calling agent in the runtime context: invoke the agent with { context: agentTrustContext(...) } (key "${AGENT_TRUST_CONTEXT_KEY}")`,
        )
      return JSON.stringify(await forAgent(caller)(input))
    },
    {
      name: name ?? 'http_request',
      description:
        description ??
        'Send an HTTP request and return {status, contentType, body, truncated} as JSON. Requests to destinations this agent did not declare are refused.',
      schema,
    },
  )
  async function close(): Promise<void> {
    const all = [...byCaller.values()]
    byCaller.clear()
    await Promise.all(all.map((e) => e.http.close()))
  }
  // The tool checks itself (egress policy, as the caller); capability-token guards need not wrap it.
  return markSelfGuarded(Object.assign(t, { forAgent, close })) as LangChainHttpTool
}
