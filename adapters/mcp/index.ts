/**
 * agent-trust for the Model Context Protocol (`@modelcontextprotocol/sdk` 1.x).
 *
 * - {@link guardMcpServer}: one call turns capability checks on for an `McpServer` or a
 *   low-level `Server`, on every transport.
 * - {@link withCapabilities}: an SDK `Client` that attaches a fresh, exact capability token
 *   to every request, for one server only.
 * - {@link McpGateway}: the checks in front of an upstream server nobody can modify, with
 *   pinned tool definitions (command: `agent-trust-mcp-gateway`).
 * - {@link serveStreamableHttp}: a small Streamable HTTP host for guarded servers, plain or
 *   with mutual TLS (`tls`); {@link createMtlsClientTransport} is its client side.
 *
 * Subpath: `agent-trust/mcp`. The SDK is an optional peer dependency; the root entry never
 * imports it.
 *
 * @module agent-trust/mcp
 */
export { capabilityErrorCode, withCapabilities } from './client.js'
export type { WithCapabilitiesOptions } from './client.js'
export { McpGateway } from './gateway.js'
export type { McpGatewayOptions, ToolPinState, ToolPinStatus } from './gateway.js'
export { serveStreamableHttp } from './http.js'
export type {
  HttpMiddleware,
  ProtectedResourceMetadataOptions,
  ServeStreamableHttpOptions,
  StreamableHttpServer,
  StreamableHttpTlsOptions,
} from './http.js'
export { createMtlsClientTransport } from './mtls.js'
export type { MtlsClientTransport, MtlsClientTransportOptions, MtlsDispatcher } from './mtls.js'
export { attachPeerIdentity, mtlsPeerIdentity, PEER_AUTH_KEY, requireMtlsPeerIdentity } from './peer.js'
export {
  AUDIENCE_CAPABILITY_KEY,
  CAPABILITY_DENIED,
  CAPABILITY_HEADER,
  CAPABILITY_META_KEY,
  mayCall,
  methodOperation,
  methodScope,
  toolDefinitionHash,
  TOOL_OPERATION_META_KEY,
  TOOL_SCOPE_META_KEY,
  UNGUARDED_METHODS,
} from './policy.js'
export type { PinnedDefinition } from './policy.js'
export { capabilityDenied, guardMcpServer } from './server.js'
export type { GuardMcpServerOptions, McpRequestExtra } from './server.js'
