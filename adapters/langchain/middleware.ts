/**
 * A `createAgent` middleware that checks every tool call with agent-trust.
 *
 * Subpath: `agent-trust/langchain`.
 */
import { ToolMessage } from '@langchain/core/messages'
import type { StructuredToolInterface } from '@langchain/core/tools'
import { createMiddleware, type AgentMiddleware } from 'langchain'
import { ConfigInvalid, isAgentTrustError, type AgentTrustError } from 'agent-trust'
import { parseOptions, printable } from '#internal'
import { z } from 'zod'
import { assertGuardable, isGuardedTool, ToolGuard, ToolGuardShape, type ToolGuardOptions } from './guard.js'

/**
 * What a denial does to the run:
 * - `fail-closed` (default): the run stops; `agent.invoke` rejects with the coded error.
 * - `soft`: the model receives an error `ToolMessage` naming the code and may carry on.
 */
export type DenialMode = 'fail-closed' | 'soft'

/**
 * `authority` and `verifier` guard the agent's local tools (see `ToolGuardOptions`). Leave
 * both out when every tool is already guarded (`guardTools`, `guardMcpTools`, the spawn and
 * HTTP tools): any other tool is then refused.
 */
export interface AgentTrustMiddlewareOptions extends Partial<ToolGuardOptions> {
  /** Default `fail-closed`: see {@link DenialMode}. */
  readonly onDenied?: DenialMode
  /** Middleware name (LangChain requires unique names per agent). Default `AgentTrustMiddleware`. */
  readonly name?: string
}

/**
 * {@link AgentTrustMiddlewareOptions}: without `authority` and `verifier` the middleware only
 * refuses unguardable tools; with one of them it needs both.
 */
const MiddlewareOptionsSchema = z
  .strictObject({
    ...ToolGuardShape,
    authority: ToolGuardShape.authority.optional(),
    verifier: ToolGuardShape.verifier.optional(),
    onDenied: z.enum(['fail-closed', 'soft']).optional(),
    name: z.string().min(1).optional(),
  })
  .superRefine((o, ctx) => {
    if ((o.authority === undefined) !== (o.verifier === undefined))
      ctx.addIssue({
        code: 'custom',
        path: [o.authority === undefined ? 'authority' : 'verifier'],
        message: 'is required with the other one',
      })
  })

/** The text the model sees on a soft denial: the code first, then the reason. Never a token or an argument. */
export function denialContent(error: AgentTrustError): string {
  return `agent-trust denied this tool call: ${error.code}. ${error.message}`
}

/**
 * A tool stand-in that fails with `error` when the ToolNode runs it. Denials raised this
 * way come back through the handler, so LangChain re-throws them unchanged instead of
 * wrapping them in a `MiddlewareError`.
 */
function refusal(name: string, error: unknown): StructuredToolInterface {
  return {
    name,
    invoke: async () => {
      throw error
    },
  } as unknown as StructuredToolInterface
}

/**
 * Check every tool call of a `createAgent` agent: the tool about to run is replaced by its
 * guarded form (see `guardTool`), so the check sees the schema-validated arguments, mints a
 * fresh token for the caller named in the runtime `context`, and verifies it with the
 * toolkit's verifier before the tool runs.
 *
 * **List it last.** LangChain composes `wrapToolCall` handlers so that the *first*
 * middleware listed is the *outermost* (`chainToolCallHandlers` in
 * `langchain/dist/agents/utils.js`). Listed last, this one is innermost: after it there is
 * only the ToolNode, so no other middleware can swap the tool or its arguments after the
 * check. Middleware listed before it can still catch the denial error (a
 * `toolErrorMiddleware`, for one): that changes what the model sees, never whether the
 * tool ran.
 *
 * It also refuses, before the first model call, an agent whose tools include a
 * provider-side server tool: those run at the provider, where nothing here can check them.
 *
 * Default `fail-closed`: a denied call is most often a prompt injection at work; stopping
 * the run denies the attacker further tries and makes the incident visible to the caller.
 * Choose `soft` where the model legitimately guesses arguments and should recover.
 *
 * @example
 * ```ts
 * const agent = createAgent({
 *   model,
 *   tools: [readDocuments, httpRequest],
 *   middleware: [summarization, agentTrustMiddleware({ authority, verifier })], // last = innermost
 * })
 * await agent.invoke({ messages }, { context: agentTrustContext(caller) })
 * ```
 */
export function agentTrustMiddleware(options: AgentTrustMiddlewareOptions): AgentMiddleware {
  parseOptions('agentTrustMiddleware', MiddlewareOptionsSchema, options)
  const { onDenied = 'fail-closed', name = 'AgentTrustMiddleware' } = options ?? ({} as AgentTrustMiddlewareOptions)
  const guard = options?.authority === undefined && options?.verifier === undefined ? undefined : new ToolGuard(options as ToolGuardOptions)

  return createMiddleware({
    name,
    wrapModelCall: async (request, handler) => {
      // Fail closed before the model can call a tool nobody here could check.
      for (const t of request.tools) if (!isGuardedTool(t)) assertGuardable(t)
      return handler(request)
    },
    wrapToolCall: async (request, handler) => {
      const named = (request.tool as { name?: unknown } | undefined)?.name
      const toolName: string = typeof named === 'string' ? named : request.toolCall.name
      if (request.tool === undefined) {
        // Nothing would run; say so as LangChain does rather than stop the run on a typo.
        // Never hand an undefined tool on: the ToolNode would look the name up among the
        // registered (unguarded) tools.
        // The name is the model's own text (steerable by an injected prompt): escaped and cut
        // before it goes back into the conversation, a trace or a log.
        const shown = printable(request.toolCall.name, 64)
        return new ToolMessage({
          content: `Error: ${shown} is not a valid tool.`,
          tool_call_id: request.toolCall.id ?? '',
          name: shown,
          status: 'error',
        })
      }
      let tool: StructuredToolInterface
      try {
        if (guard !== undefined) tool = guard.wrap(request.tool as StructuredToolInterface)
        else if (isGuardedTool(request.tool)) tool = request.tool as StructuredToolInterface
        else
          throw new ConfigInvalid(`tool "${toolName.slice(0, 64)}" is not guarded and this middleware has no verifier to check it with`, {
            details: { rule: 'unguarded-tool' },
          })
      } catch (e) {
        tool = refusal(toolName, e)
      }
      try {
        return await handler({ ...request, tool })
      } catch (e) {
        if (onDenied === 'soft' && isAgentTrustError(e)) {
          return new ToolMessage({ content: denialContent(e), tool_call_id: request.toolCall.id ?? '', name: toolName, status: 'error' })
        }
        throw e
      }
    },
  }) as unknown as AgentMiddleware
}
