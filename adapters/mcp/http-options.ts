/** The options and the face of the Streamable HTTP host (`serveStreamableHttp`). */
import { type IncomingMessage, type ServerResponse } from 'node:http'
import { type Server as HttpsServer } from 'node:https'
import type { AgentTrustError } from 'agent-trust'
import type { AuditLog, PeerIdentity } from 'agent-trust'
import type { CertificateRevocationChecker, TlsCredentials } from '#internal'

/** Connect-style middleware, e.g. the SDK's `requireBearerAuth` for the server's own OAuth. */
export type HttpMiddleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void | Promise<void>

export interface ServeStreamableHttpOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  readonly host?: string
  /** Port; `0` (default) picks a free one. */
  readonly port?: number
  /** The MCP endpoint path. Default `/mcp`. */
  readonly path?: string
  /**
   * At most this many open sessions. When full, the oldest session that never carried a valid
   * capability is ended to make room; only when every session has carried one do new
   * sessions get HTTP 503. Default 1000.
   */
  readonly maxSessions?: number
  /**
   * At most this many sessions that have not (yet) carried a valid capability per peer (the
   * mTLS agent id, else the remote address); opening one more ends that peer's oldest.
   * `initialize` carries no token, so this is what stops a token-less flood. Default 16.
   */
  readonly maxTokenlessSessionsPerPeer?: number
  /** A session that has not carried a valid capability ends after this long idle, ms. Default 30000 (30 s). */
  readonly tokenlessIdleMs?: number
  /** Any session ends after this long idle, ms. Default 1800000 (30 min). */
  readonly idleMs?: number
  /** Largest accepted request body, bytes. Default 4 MiB. */
  readonly maxBodyBytes?: number
  /** Answer with JSON instead of an SSE stream when a request needs no streaming. Default false (SDK default). */
  readonly enableJsonResponse?: boolean
  /**
   * Runs before the MCP transport on every request (for example `requireBearerAuth` from
   * `@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js`: the server's own OAuth
   * stays in `Authorization`, agent-trust capabilities travel in `_meta`).
   */
  readonly middleware?: HttpMiddleware
  /**
   * Serve HTTPS with mutual TLS (needs `@peculiar/x509`; see `agent-trust/identity`). A peer
   * without a valid, unrevoked certificate from the trust domain is refused before any
   * MCP message is read; each request's peer reaches `guardMcpServer`'s verifier, which then
   * requires the token's presenter to be that agent and a bound token to match its
   * certificate (`ERR_TOKEN_BINDING`); a session answers only the agent that opened it.
   */
  readonly tls?: StreamableHttpTlsOptions
  /**
   * What the RFC 9728 protected-resource metadata document says (served at
   * `/.well-known/oauth-protected-resource` and `/.well-known/oauth-protected-resource<path>`,
   * and named by every `WWW-Authenticate` challenge's `resource_metadata`).
   */
  readonly resourceMetadata?: ProtectedResourceMetadataOptions
  /**
   * Answer a guard denial of a request whose capability is not in `params._meta` (none at
   * all, or the `Agent-Trust-Capability` header) with the authorization specification's
   * HTTP signals: 401 `invalid_token`, 403 `insufficient_scope` with `scope`, 503 with
   * `Retry-After`, each with `resource_metadata`; the body is the same JSON-RPC error.
   * A capability sent in `params._meta` (what `withCapabilities` does) is a JSON-RPC-level
   * credential: its denial stays a JSON-RPC error on HTTP 200, so SDK clients read
   * `data.code` as on every other transport. Default `true`.
   */
  readonly httpSignals?: boolean
}

/** The RFC 9728 document of a {@link serveStreamableHttp} endpoint. */
export interface ProtectedResourceMetadataOptions {
  /** The resource identifier. Default: the endpoint URL (set it behind a reverse proxy). */
  readonly resource?: string
  /** The issuing authorities' URLs (an authority service's base URL): `authorization_servers`. */
  readonly authorizationServers?: readonly string[]
  /** Where the authorities' signing keys are (`/.well-known/jwks.json` of the authority service): `jwks_uri`. */
  readonly jwksUri?: string
  /** The scopes this server's tools need (`scopes_supported`), e.g. the templates `tools/list` advertises. */
  readonly scopesSupported?: readonly string[]
  /** A human-readable name (`resource_name`). */
  readonly resourceName?: string
  /** The challenge's `realm` (this server's agent id). Default: none. */
  readonly realm?: string
}

/** Mutual TLS for {@link serveStreamableHttp}. */
export interface StreamableHttpTlsOptions {
  /**
   * This server's certificate and key (an X.509-SVID naming it, e.g. `identity.credentials`
   * or `ca.issueLocal({ kind: 'agent', id })`) and the CA bundle clients must chain to.
   */
  readonly credentials: TlsCredentials
  /** Only client certificates of this trust domain. Default: the CA certificate's (`spiffe://<domain>`). */
  readonly trustDomain?: string
  /** Revoked certificates and identities (the authority's list or a feed-fed copy): checked after the handshake and again on every request. */
  readonly revocations?: CertificateRevocationChecker
  /**
   * Where refused connections and requests are recorded (`tool_call`, `deny`, the
   * `ERR_PEER_*` code, rule in `note`). MCP decisions are recorded by the guard.
   */
  readonly audit?: AuditLog
  /** Clock, epoch ms (tests). */
  readonly now?: () => number
}

export interface StreamableHttpServer {
  /** The endpoint, e.g. `http://127.0.0.1:54321/mcp` (`https:` with `tls`). */
  readonly url: URL
  /** Open sessions. */
  readonly sessions: number
  /**
   * Serve a renewed certificate from now on (`identity.onChange((c) => http.updateCredentials(c))`);
   * it must name the same server. Throws `TypeError` without `tls`.
   */
  updateCredentials(credentials: TlsCredentials): void
  close(): Promise<void>
}

/** What the request path needs from the TLS set-up. */
export interface TlsContext {
  readonly server: HttpsServer
  /** The request's peer; throws a coded error (expired or revoked since the handshake, ...). */
  readonly peer: (req: IncomingMessage) => PeerIdentity
  readonly refuse: (error: AgentTrustError, stage: 'connection' | 'request') => void
  readonly update: (credentials: TlsCredentials) => void
}
