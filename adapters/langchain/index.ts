/**
 * agent-trust for LangChain.js (`langchain` 1.x, `@langchain/core` 1.x).
 *
 * - {@link guardTool} / {@link guardTools}: wrap a tool or a whole toolkit; every call is
 *   checked with a per-call capability token, minted for the caller in the runtime `context`.
 * - {@link agentTrustMiddleware}: the same check as a `createAgent` middleware (list it last).
 * - {@link agentAsTool}, {@link taskTool}, {@link handoffTool}, {@link runSubagent}: sub-agent
 *   spawns through the authority, each child running as itself.
 *
 * Subpath: `agent-trust/langchain`. Peer dependencies: `langchain`, `@langchain/core`.
 *
 * @module agent-trust/langchain
 */
export { AGENT_TRUST_CONTEXT_KEY, agentTrustContext, callerFromContext, runIsolated } from './context.js'
export type { AgentTrustCaller, AgentTrustRunContext } from './context.js'

export { assertGuardable, guardTool, guardTools, isGuardedTool } from './guard.js'
export type { ToolGuardOptions, ToolSource } from './guard.js'

export { agentTrustMiddleware, denialContent } from './middleware.js'
export type { AgentTrustMiddlewareOptions, DenialMode } from './middleware.js'

export { agentAsTool, handoffTool, runSubagent, taskTool } from './spawn.js'
export type { ChildDeclaration, InvokableAgent, SpawnOptions, SubagentDefinition, SubagentRun } from './spawn.js'

export { guardMcpClient, guardMcpTools } from './mcp.js'
export type { GuardMcpClientOptions } from './mcp.js'
