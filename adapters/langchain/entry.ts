/**
 * `agent-trust/langchain` as the package publishes it: loads the implementation (`./index.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `@langchain/core` or `langchain` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '#internal'

const m = await loadWithPeers('agent-trust/langchain', ['@langchain/core', 'langchain'], () => import('./index.js'))

export const {
  AGENT_TRUST_CONTEXT_KEY,
  agentAsTool,
  agentTrustContext,
  agentTrustMiddleware,
  assertGuardable,
  callerFromContext,
  denialContent,
  guardMcpClient,
  guardMcpTools,
  guardTool,
  guardTools,
  handoffTool,
  isGuardedTool,
  runIsolated,
  runSubagent,
  taskTool,
} = m
