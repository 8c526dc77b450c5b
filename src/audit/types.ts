/**
 * Audit events. The kernel only builds events and hands them to an
 * {@link AuditLog}; hashing, chaining and sinks live behind that interface.
 */
import type { AgentTrustErrorCode } from '../errors.js'
import type { AuditContext } from '../policy/claims.js'
import type { TrustLevel } from '../policy/trust.js'

export type AuditAction =
  | 'mint'
  | 'exchange'
  | 'spawn'
  | 'tool_call'
  | 'agent_call'
  | 'egress'
  | 'revoke'
  | 'trust_change'
  | 'key'
  | 'mode'
  /** The audit log's own life cycle: a chain's seal, drops reported by a sink. */
  | 'audit'

export type AuditDecision = 'allow' | 'deny'

/** What a decision point reports. Identifiers and hashes only: never a token or raw argument. */
export interface AuditEventInput {
  readonly action: AuditAction
  readonly decision: AuditDecision
  readonly code?: AgentTrustErrorCode
  /** Who acted (agent id). */
  readonly origin?: string
  /** What was acted on (agent, server, host). */
  readonly destination?: string
  readonly capability?: readonly string[]
  readonly tool?: string
  readonly jti?: string
  readonly trustLevel?: TrustLevel
  readonly context?: AuditContext
  /** Delegation chain: ancestor jtis. */
  readonly chain?: readonly string[]
  /** Actors, current first (from `act`). */
  readonly actors?: readonly string[]
  /** SHA-256 (base64url) of the canonical JSON of tool arguments, when there were any. */
  readonly argsHash?: string
  /** `audit` when the decision was logged but not enforced. */
  readonly enforced?: boolean
  /** Short, non-secret free text (a rule name, a request id). */
  readonly note?: string
}

/** A sink for decisions. `record` must not block the call path and must never throw. */
export interface AuditLog {
  record(event: AuditEventInput): void
  /**
   * Optional gate, consulted by the authority and verifiers before each decision: throws a
   * coded error (`ERR_AUDIT_UNAVAILABLE`) when no call may be allowed now, e.g. a log with
   * `onAuditFailure: 'deny'` whose trail cannot be written. Synchronous and cheap.
   */
  admit?(): void
  /** True when the authority's decisions (mint, exchange, spawn, trust change) answer only after {@link commit}. */
  readonly durable?: boolean
  /** Record an event and resolve once every sink has written it; reject `ERR_AUDIT_UNAVAILABLE` if one fails. */
  commit?(event: AuditEventInput): Promise<void>
}

/** Discards everything (used when the application supplies no audit log). */
export const discardAudit: AuditLog = Object.freeze({ record(): void {} })

/** Keeps events in an array: for tests and the demo. */
export class MemoryAuditLog implements AuditLog {
  readonly events: Array<AuditEventInput & { readonly time: string }> = []
  record(event: AuditEventInput): void {
    this.events.push({ time: new Date().toISOString(), ...event })
  }
}
