/**
 * agent-trust for the Model Context Protocol: the TypeScript SDK 1.x (`@modelcontextprotocol/sdk`)
 * and 2.x (`@modelcontextprotocol/server`, `@modelcontextprotocol/client`,
 * `@modelcontextprotocol/node`).
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
 * Subpath: `agent-trust/mcp`. The SDKs are optional peer dependencies; the root entry never
 * imports them, and this entry loads an SDK only when a function needs it (an application on
 * one SDK major needs nothing of the other).
 *
 * @module agent-trust/mcp
 */
export { capabilityErrorCode, withCapabilities } from './client.js'
export type { WithCapabilitiesOptions } from './client.js'
export { McpGateway } from './gateway.js'
export { guardMcpHandler } from './handler-v2.js'
export type { GuardMcpHandlerOptions, McpFetchHandler } from './handler-v2.js'
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
export { capabilityDenied, CapabilityDeniedError, guardMcpServer } from './server.js'
export { capabilityFetch, challengedScopes } from './step-up.js'
export type { CapabilityFetchOptions } from './step-up.js'
export type { GuardMcpServerOptions, McpRequestContextV2, McpRequestExtra } from './server.js'
