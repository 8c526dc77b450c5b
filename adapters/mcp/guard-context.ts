/** What the guard of an MCP server decides with: its options, the context compiled from them at set-up, and the SDK shapes it handles. */
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js'
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js'
import type { Verifier } from 'agent-trust'
import type { ToolCatalog } from '#internal'
import type {
  AuditLog,
  EnforcementMode,
  Manifest,
  ManifestInput,
  PeerIdentity,
  ReplayRevocationStore,
  ToolDeclaration,
  TrustedIssuer,
  TrustLevel,
} from 'agent-trust'
import type { McpRequestContextV2 } from './server-v2.js'

/** What the SDK passes a request handler as its second argument (SDK 1.x). */
export type McpRequestExtra = RequestHandlerExtra<ServerRequest, ServerNotification>

export interface GuardMcpServerOptions {
  /**
   * A ready verifier; its `id` is this server's id (the `aud` tokens must carry) and its
   * `mode` applies. Give either this, or `serverId` + `issuers` (and optionally `store`,
   * `clockToleranceSeconds`, `mode`) and the guard builds one.
   */
  readonly verifier?: Verifier
  /** This server's agent id in the manifest: the audience of the tokens it accepts. */
  readonly serverId?: string
  /** Authorities whose keys are trusted (when no `verifier` is given). */
  readonly issuers?: readonly TrustedIssuer[]
  /** Replay/revocation store shared with the authority (when no `verifier` is given). Default: in-memory. */
  readonly store?: ReplayRevocationStore
  /** Clock tolerance in seconds (when no `verifier` is given). Default 5, max 30. */
  readonly clockToleranceSeconds?: number
  /**
   * The manifest. The server's own entry (`agents[id === serverId]`) declares its tools'
   * operations and scope templates; the other entries give the callers' grants and levels,
   * so `tools/list` shows each caller only the tools it may call, and (when the guard builds
   * the verifier) a caller's level there caps its token's.
   */
  readonly manifest?: Manifest | ManifestInput
  /** Tool declarations to use instead of the manifest entry's `tools`. */
  readonly tools?: readonly ToolDeclaration[]
  /** Where decisions are recorded. Default: the verifier's own log. */
  readonly audit?: AuditLog
  /** `enforce` (default, or `AGENT_TRUST`), `audit` or `off` (when no `verifier` is given). */
  readonly mode?: EnforcementMode
  /**
   * The authenticated peer of the connection (an mTLS certificate's agent id and
   * thumbprint), when the transport knows it. The token's presenter must be that peer, and
   * a certificate-bound token must match its certificate (`ERR_TOKEN_BINDING`). A hook that
   * throws denies the call with the error's code. Default `mtlsPeerIdentity`: the peer
   * `serveStreamableHttp({ tls })` (or {@link attachPeerIdentity}) attached to the request,
   * if any; {@link requireMtlsPeerIdentity} also denies requests that have none.
   */
  peerIdentity?(extra: McpRequestExtra | McpRequestContextV2): PeerIdentity | undefined | Promise<PeerIdentity | undefined>
  /**
   * Accept the token from the `Agent-Trust-Capability` HTTP header when `params._meta`
   * carries none (Streamable HTTP only). Default `true`.
   */
  readonly acceptHeader?: boolean
  /**
   * Tools to hide from `tools/list` and refuse with `ERR_TOOL_UNDECLARED` (the gateway
   * withholds tools whose definition is not the pinned one). Called per request.
   */
  readonly withheld?: (tool: string) => boolean
  /**
   * Return the server's `instructions` in the `initialize` result. `initialize` carries no
   * token, so whatever it returns goes to any peer that can connect. Default `false`: the
   * field is dropped (free text that reaches a model unauthenticated).
   */
  readonly initializeInstructions?: boolean
}

export type Meta = Record<string, unknown>
export interface RawRequest {
  readonly method: string
  readonly params?: { readonly _meta?: Meta; readonly [key: string]: unknown }
  readonly [key: string]: unknown
}
export type RawHandler = (request: RawRequest, extra: McpRequestExtra) => Promise<unknown>

export interface Caller {
  readonly grants: readonly string[]
  readonly level: TrustLevel
}

export interface GuardContext {
  readonly serverId: string
  readonly verifier: Verifier
  readonly mode: EnforcementMode
  readonly audit: AuditLog
  /** This server's tools, compiled at set-up; undeclared ones resolve to `execute` / `tool:<server>:<name>`. */
  readonly catalog: ToolCatalog
  readonly callers: ReadonlyMap<string, Caller> | undefined
  readonly peerIdentity: GuardMcpServerOptions['peerIdentity']
  readonly acceptHeader: boolean
  readonly withheld: ((tool: string) => boolean) | undefined
  readonly initializeInstructions: boolean
  /** How this SDK major hands the handler the HTTP layer. */
  readonly host: HostDialect
}

/** Where the handler context of one SDK major keeps the header token, and how to strip it. */
export interface HostDialect {
  header(extra: McpRequestExtra): unknown
  strip(extra: McpRequestExtra): McpRequestExtra
}
