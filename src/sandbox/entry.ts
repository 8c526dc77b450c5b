/**
 * `agent-trust/sandbox` as the package publishes it: loads the implementation (`./index.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `ipaddr.js` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '../lib/peer.js'

const m = await loadWithPeers('agent-trust/sandbox', ['ipaddr.js'], () => import('./index.js'))

export const {
  DEFAULT_SUBNET_RANGE,
  chooseSubnet,
  gcSandbox,
  inboundPorts,
  hasNetAdmin,
  hostRuleset,
  innerRuleset,
  networkPolicy,
  networkPolicyFor,
  preflight,
  resolveDirect,
  sandboxNames,
  startEgressProxy,
  startSandbox,
} = m
