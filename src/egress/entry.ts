/**
 * `agent-trust/egress` as the package publishes it: loads the implementation (`./index.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `undici` or `ipaddr.js` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '../lib/peer.js'

const m = await loadWithPeers('agent-trust/egress', ['undici', 'ipaddr.js'], () => import('./index.js'))

export const {
  AGENT_CAPABILITY_HEADER,
  EgressPolicy,
  INTERNAL_ADDRESS_CLASSES,
  METADATA_ADDRESSES,
  addressClassAllowed,
  agentCallDenial,
  agentCallScope,
  classifyAddress,
  createAgentCallDispatcher,
  createAgentCallGuard,
  createAgentCapabilityInterceptor,
  createEgressAgent,
  createEgressConnector,
  createEgressGuard,
  createHttpTool,
  defaultAgentCapability,
  defaultPort,
  destinationCovers,
  destinationMatches,
  egressCovered,
  egressDenied,
  fetch,
  installGlobalEgress,
  normalizeHost,
  normalizeOrigin,
  operationForMethod,
  parseDestination,
  reportDispatchError,
  request,
  systemResolver,
  tryParseDestination,
} = m
