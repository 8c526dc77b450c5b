/**
 * Egress control for agents: an agent's HTTP reaches only the
 * destinations it declared, every redirect hop and every resolved address is checked, and
 * agent-to-agent calls carry fresh capability tokens that never leave their origin.
 *
 * Subpath: `agent-trust/egress`. Requires the optional peers `undici` (^7) and `ipaddr.js`.
 * The root entry (`agent-trust`) never imports this module.
 *
 * @module agent-trust/egress
 */
export { createEgressAgent, createEgressConnector, createEgressGuard, installGlobalEgress, systemResolver } from './interceptor.js'
export { reportDispatchError } from './dispatch-error.js'
export { fetch, request } from './fetch.js'
export type {
  EgressAgentOptions,
  EgressConnectOptions,
  EgressConnectorOptions,
  EgressGuardOptions,
  InstalledEgress,
  ResolvedAddress,
  Resolver,
} from './interceptor.js'

export { egressDenied, EgressPolicy } from './policy.js'
export type { Allowance, Denial, EgressDecision, EgressPolicyOptions, EgressRule } from './policy.js'

export {
  defaultPort,
  destinationCovers,
  destinationMatches,
  egressCovered,
  normalizeHost,
  parseDestination,
  tryParseDestination,
} from '../policy/destination.js'
export type { Destination, DestinationParse, EgressScheme, HostKind, NormalizedHost } from '../policy/destination.js'

export { addressClassAllowed, classifyAddress, INTERNAL_ADDRESS_CLASSES, METADATA_ADDRESSES } from './address.js'
export type { AddressClass } from './address.js'

export { createHttpTool } from './http-tool.js'
export type { HttpTool, HttpToolInput, HttpToolOptions, HttpToolResult } from './http-tool.js'

export { createAgentCallDispatcher, createAgentCapabilityInterceptor, defaultAgentCapability, normalizeOrigin } from './agent-call.js'
export type {
  AgentCallDispatcherOptions,
  AgentCallTarget,
  AgentCallTls,
  AgentCapabilityOptions,
  AgentHop,
  CapabilityRequest,
} from './agent-call.js'

export { AGENT_CAPABILITY_HEADER, agentCallDenial, agentCallScope, createAgentCallGuard, operationForMethod } from '../http/agent-server.js'
export type {
  AgentCallDecision,
  AgentCallGuard,
  AgentCallGuardOptions,
  AgentCallRequestInfo,
  AgentCallRequirement,
} from '../http/agent-server.js'
