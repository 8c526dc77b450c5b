/**
 * `agent-trust/mcp` as the package publishes it: loads the implementation (`./index.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `@modelcontextprotocol/sdk` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { dependencyMissing, loadWithPeers, peerInstalled } from '#internal'

// The implementation loads an SDK (1.x or 2.x) only where a function needs it, so either major
// alone is enough; with neither installed, importing this subpath names the one to install.
const SDK_PACKAGES = ['@modelcontextprotocol/sdk', '@modelcontextprotocol/server', '@modelcontextprotocol/client']
if (!SDK_PACKAGES.some(peerInstalled)) throw dependencyMissing('agent-trust/mcp', ['@modelcontextprotocol/sdk'])
const m = await loadWithPeers('agent-trust/mcp', ['@modelcontextprotocol/sdk'], () => import('./index.js'))

export const {
  AUDIENCE_CAPABILITY_KEY,
  CAPABILITY_DENIED,
  CAPABILITY_HEADER,
  CAPABILITY_META_KEY,
  CapabilityDeniedError,
  McpGateway,
  PEER_AUTH_KEY,
  TOOL_OPERATION_META_KEY,
  TOOL_SCOPE_META_KEY,
  UNGUARDED_METHODS,
  attachPeerIdentity,
  capabilityDenied,
  capabilityErrorCode,
  capabilityFetch,
  challengedScopes,
  createMtlsClientTransport,
  guardMcpHandler,
  guardMcpServer,
  mayCall,
  methodOperation,
  methodScope,
  mtlsPeerIdentity,
  requireMtlsPeerIdentity,
  serveStreamableHttp,
  toolDefinitionHash,
  withCapabilities,
} = m
