/**
 * The agent's HTTP tool as a LangChain tool: the egress-guarded function from
 * `agent-trust/egress`, bound to one agent's declared destinations. A refused request
 * throws the coded `EgressDenied` (`ERR_EGRESS_DENIED`, naming the host and the rule); a
 * `createAgent` ToolNode turns it into an error `ToolMessage` for the model.
 *
 * Subpath: `agent-trust/langchain/http` (kept apart so `agent-trust/langchain` does not need undici). Peer dependencies: `@langchain/core`, `undici`.
 */
import { tool, type DynamicStructuredTool } from '@langchain/core/tools'
import { z } from 'zod'
import { createHttpTool, type HttpTool, type HttpToolOptions } from 'agent-trust/egress'
import { markSelfGuarded } from './guard.js'

export interface LangChainHttpToolOptions extends HttpToolOptions {
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
  /** The guarded function behind the tool. */
  readonly http: HttpTool
  close(): Promise<void>
}

/**
 * @example
 * ```ts
 * const httpTool = createLangChainHttpTool({ agentId: 'agent-summarizer-v2', trustLevel: 'L2', egress: manifestAgent.egress })
 * const agent = createAgent({ model, tools: [httpTool] })
 * ```
 */
export function createLangChainHttpTool(options: LangChainHttpToolOptions): LangChainHttpTool {
  const http = createHttpTool(options)
  const t = tool(async (input) => JSON.stringify(await http(input)), {
    name: options.name ?? 'http_request',
    description:
      options.description ??
      'Send an HTTP request and return {status, contentType, body, truncated} as JSON. Requests to destinations this agent did not declare are refused.',
    schema,
  })
  // The tool checks itself (egress policy); capability-token guards need not wrap it.
  return markSelfGuarded(Object.assign(t, { http, close: () => http.close() })) as LangChainHttpTool
}
