/**
 * Every denial agent-trust makes is an {@link AgentTrustError} with a stable `code`.
 * `code` is the contract: switch on it, log it, return it to callers. Messages say what to
 * fix and never contain a token, a key or an argument value.
 *
 * Subpath: `agent-trust/errors` (also re-exported from `agent-trust`).
 *
 * @module agent-trust/errors
 */

import { ERROR_CATALOG } from './lib/error-catalog.js'

export { ERROR_CATALOG, type CatalogEntry } from './lib/error-catalog.js'

export type AgentTrustErrorCode = keyof typeof ERROR_CATALOG

const kAgentTrustError = Symbol.for('agent-trust.error')

/** Identifiers an error may carry. Never tokens, keys or argument values. */
export interface ErrorDetails {
  readonly claim?: string
  readonly jti?: string
  readonly agentId?: string
  readonly scope?: string
  readonly host?: string
  readonly rule?: string
  readonly kid?: string
  readonly [key: string]: string | number | boolean | undefined
}

export interface AgentTrustErrorOptions {
  cause?: unknown
  details?: ErrorDetails
}

/**
 * Base class. `instanceof` works across two copies of the package (a brand via
 * `Symbol.for`), and `SubClass[Symbol.hasInstance]` matches on `code`.
 */
export class AgentTrustError extends Error {
  static code: AgentTrustErrorCode = 'ERR_GENERIC'
  code: AgentTrustErrorCode = 'ERR_GENERIC'
  override name: string = 'AgentTrustError'
  readonly details: ErrorDetails

  constructor(message?: string, options: AgentTrustErrorOptions = {}) {
    super(message ?? 'agent-trust denied the operation', options.cause === undefined ? undefined : { cause: options.cause })
    this.details = Object.freeze({ ...options.details })
  }

  get [kAgentTrustError](): true {
    return true
  }

  static override [Symbol.hasInstance](this: { code: AgentTrustErrorCode }, value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false
    if ((value as Record<symbol, unknown>)[kAgentTrustError] !== true) return false
    return this.code === 'ERR_GENERIC' || (value as AgentTrustError).code === this.code
  }

  /** A JSON shape safe to send to a caller or an audit log. */
  toJSON(): { code: AgentTrustErrorCode; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details }
  }
}

function defineError<C extends Exclude<AgentTrustErrorCode, 'ERR_GENERIC'>>(code: C) {
  const entry = ERROR_CATALOG[code]
  return class extends AgentTrustError {
    static override code: AgentTrustErrorCode = code
    override code: AgentTrustErrorCode = code
    override name: string = entry.name
    constructor(message?: string, options?: AgentTrustErrorOptions) {
      super(message ?? `${entry.when} ${entry.fix}`, options)
    }
  }
}

export class ConfigInvalid extends defineError('ERR_CONFIG_INVALID') {}
export class TokenMissing extends defineError('ERR_TOKEN_MISSING') {}
export class TokenMalformed extends defineError('ERR_TOKEN_MALFORMED') {}
export class TokenAlgorithm extends defineError('ERR_TOKEN_ALG') {}
export class TokenKeyUnknown extends defineError('ERR_TOKEN_KEY_UNKNOWN') {}
export class TokenSignature extends defineError('ERR_TOKEN_SIGNATURE') {}
export class TokenClaims extends defineError('ERR_TOKEN_CLAIMS') {}
export class TokenExpired extends defineError('ERR_TOKEN_EXPIRED') {}
export class TokenNotYetValid extends defineError('ERR_TOKEN_NOT_YET_VALID') {}
export class TokenAudience extends defineError('ERR_TOKEN_AUDIENCE') {}
export class TokenIssuer extends defineError('ERR_TOKEN_ISSUER') {}
export class TokenLifetime extends defineError('ERR_TOKEN_LIFETIME') {}
export class TokenBinding extends defineError('ERR_TOKEN_BINDING') {}
export class PeerUnauthenticated extends defineError('ERR_PEER_UNAUTHENTICATED') {}
export class PeerForbidden extends defineError('ERR_PEER_FORBIDDEN') {}
export class CertificateRequestDenied extends defineError('ERR_CSR_DENIED') {}
export class AuthorityUnavailable extends defineError('ERR_AUTHORITY_UNAVAILABLE') {}
export class RequestInvalid extends defineError('ERR_REQUEST_INVALID') {}
export class TokenRevoked extends defineError('ERR_TOKEN_REVOKED') {}
export class AgentRevoked extends defineError('ERR_AGENT_REVOKED') {}
export class TokenReplayed extends defineError('ERR_TOKEN_REPLAYED') {}
export class TrustLevelDenied extends defineError('ERR_TRUST_LEVEL') {}
export class ScopeDenied extends defineError('ERR_SCOPE_DENIED') {}
export class ScopeInvalid extends defineError('ERR_SCOPE_INVALID') {}
export class ScopeEscalation extends defineError('ERR_SCOPE_ESCALATION') {}
export class DelegationDepth extends defineError('ERR_DELEGATION_DEPTH') {}
export class SpawnDenied extends defineError('ERR_SPAWN_DENIED') {}
export class SpawnEscalation extends defineError('ERR_SPAWN_ESCALATION') {}
export class AgentUnknown extends defineError('ERR_AGENT_UNKNOWN') {}
export class ToolUndeclared extends defineError('ERR_TOOL_UNDECLARED') {}
export class StoreUnavailable extends defineError('ERR_STORE_UNAVAILABLE') {}
export class StoreBusy extends defineError('ERR_STORE_BUSY') {}
export class EgressDenied extends defineError('ERR_EGRESS_DENIED') {}
export class SandboxUnavailable extends defineError('ERR_SANDBOX_UNAVAILABLE') {}
export class TrustChangeDenied extends defineError('ERR_TRUST_CHANGE_DENIED') {}
export class KeyInvalid extends defineError('ERR_KEY_INVALID') {}
export class KeyStoreInsecure extends defineError('ERR_KEY_STORE_INSECURE') {}
export class DependencyMissing extends defineError('ERR_DEPENDENCY_MISSING') {}
export class AuditTampered extends defineError('ERR_AUDIT_TAMPERED') {}
export class UsageInvalid extends defineError('ERR_USAGE') {}
export class FileUnreadable extends defineError('ERR_FILE_UNREADABLE') {}
export class KeyNotFound extends defineError('ERR_KEY_NOT_FOUND') {}
export class KeyStoreNotEmpty extends defineError('ERR_KEY_STORE_NOT_EMPTY') {}
export class AuditUnavailable extends defineError('ERR_AUDIT_UNAVAILABLE') {}

/** Every error class by code, for tests and for rebuilding an error from a wire `code`. */
export const ERROR_CLASSES: {
  readonly [C in AgentTrustErrorCode]: new (message?: string, options?: AgentTrustErrorOptions) => AgentTrustError
} = {
  ERR_GENERIC: AgentTrustError,
  ERR_CONFIG_INVALID: ConfigInvalid,
  ERR_TOKEN_MISSING: TokenMissing,
  ERR_TOKEN_MALFORMED: TokenMalformed,
  ERR_TOKEN_ALG: TokenAlgorithm,
  ERR_TOKEN_KEY_UNKNOWN: TokenKeyUnknown,
  ERR_TOKEN_SIGNATURE: TokenSignature,
  ERR_TOKEN_CLAIMS: TokenClaims,
  ERR_TOKEN_EXPIRED: TokenExpired,
  ERR_TOKEN_NOT_YET_VALID: TokenNotYetValid,
  ERR_TOKEN_AUDIENCE: TokenAudience,
  ERR_TOKEN_ISSUER: TokenIssuer,
  ERR_TOKEN_LIFETIME: TokenLifetime,
  ERR_TOKEN_BINDING: TokenBinding,
  ERR_PEER_UNAUTHENTICATED: PeerUnauthenticated,
  ERR_PEER_FORBIDDEN: PeerForbidden,
  ERR_CSR_DENIED: CertificateRequestDenied,
  ERR_AUTHORITY_UNAVAILABLE: AuthorityUnavailable,
  ERR_REQUEST_INVALID: RequestInvalid,
  ERR_TOKEN_REVOKED: TokenRevoked,
  ERR_AGENT_REVOKED: AgentRevoked,
  ERR_TOKEN_REPLAYED: TokenReplayed,
  ERR_TRUST_LEVEL: TrustLevelDenied,
  ERR_SCOPE_DENIED: ScopeDenied,
  ERR_SCOPE_INVALID: ScopeInvalid,
  ERR_SCOPE_ESCALATION: ScopeEscalation,
  ERR_DELEGATION_DEPTH: DelegationDepth,
  ERR_SPAWN_DENIED: SpawnDenied,
  ERR_SPAWN_ESCALATION: SpawnEscalation,
  ERR_AGENT_UNKNOWN: AgentUnknown,
  ERR_TOOL_UNDECLARED: ToolUndeclared,
  ERR_STORE_UNAVAILABLE: StoreUnavailable,
  ERR_STORE_BUSY: StoreBusy,
  ERR_EGRESS_DENIED: EgressDenied,
  ERR_SANDBOX_UNAVAILABLE: SandboxUnavailable,
  ERR_TRUST_CHANGE_DENIED: TrustChangeDenied,
  ERR_KEY_INVALID: KeyInvalid,
  ERR_KEY_STORE_INSECURE: KeyStoreInsecure,
  ERR_DEPENDENCY_MISSING: DependencyMissing,
  ERR_AUDIT_TAMPERED: AuditTampered,
  ERR_USAGE: UsageInvalid,
  ERR_FILE_UNREADABLE: FileUnreadable,
  ERR_KEY_NOT_FOUND: KeyNotFound,
  ERR_KEY_STORE_NOT_EMPTY: KeyStoreNotEmpty,
  ERR_AUDIT_UNAVAILABLE: AuditUnavailable,
}

/** Rebuild a typed error from a code received over the wire (unknown codes become ERR_GENERIC). */
export function errorFromCode(code: string, message?: string, details?: ErrorDetails): AgentTrustError {
  const Ctor = (ERROR_CLASSES as Record<string, (typeof ERROR_CLASSES)[AgentTrustErrorCode] | undefined>)[code] ?? AgentTrustError
  return new Ctor(message, details === undefined ? undefined : { details })
}

/** True for any agent-trust error, from any copy of the package. */
export function isAgentTrustError(value: unknown): value is AgentTrustError {
  return value instanceof AgentTrustError
}
