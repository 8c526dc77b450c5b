/**
 * Agent-to-agent HTTP, server side: verify capability tokens in front of `node:http`
 * listeners and Fetch-API handlers. No undici needed.
 *
 * Subpath: `agent-trust/http` (also re-exported from `agent-trust/egress`).
 *
 * @module agent-trust/http
 */
export { AGENT_CAPABILITY_HEADER, agentCallDenial, agentCallScope, createAgentCallGuard, operationForMethod } from './agent-server.js'
export type {
  AgentCallDecision,
  AgentCallGuard,
  AgentCallGuardOptions,
  AgentCallRequestInfo,
  AgentCallRequirement,
} from './agent-server.js'
export { bearerChallenge, denialAnswer, RETRY_AFTER_SECONDS, statusOf } from './denial.js'
export type { DenialAnswer, DenialOptions } from './denial.js'
