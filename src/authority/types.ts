/**
 * The authority's contract: what callers ask for (mint, exchange, spawn, trust changes) and
 * what an authority, in-process or remote, answers. A leaf: other modules depend on these
 * types without depending on the authority itself.
 */
import type { AuditLog } from '../audit/types.js'
import type { AgentDeclaration, AgentDeclarationInput, Manifest, ManifestInput } from '../config/manifest.js'
import type { KeySet, SigningKeyRecord } from '../keys/index.js'
import type { AuditContext } from '../policy/claims.js'
import type { Operation, TrustLevel } from '../policy/trust.js'
import type { ReplayRevocationStore } from '../revocation/store.js'
import type { PeerIdentity } from '../verifier/index.js'

export interface MintRequest {
  /** The calling agent. */
  readonly subject: string
  /** The target agent or tool server: becomes `aud`. */
  readonly audience: string
  /** Exact scopes the call needs (no wildcards), 1-32. */
  readonly scope: readonly string[]
  /** The operation the scopes are for: checked against the subject's level. */
  readonly operation: Operation
  /** Audit context, copied unchanged into every delegated token. */
  readonly context: AuditContext
  /** Lifetime in seconds; default from the manifest (60), at most 300. */
  readonly ttlSeconds?: number
  /** `delegation_depth`; default and maximum: the agent's `maxDelegationDepth`. */
  readonly delegationDepth?: number
  /** Bind the token to this certificate (RFC 8705 `x5t#S256`). */
  readonly certificateThumbprint?: string
}

export interface ToolMintRequest {
  readonly subject: string
  /** The tool server (an agent in the manifest). */
  readonly audience: string
  readonly tool: string
  /** The call's arguments: they fill the tool's scope template. */
  readonly args?: Readonly<Record<string, unknown>>
  readonly context: AuditContext
  readonly ttlSeconds?: number
  /** `delegation_depth`; default 0 (the callee may not re-delegate), at most the agent's `maxDelegationDepth`. */
  readonly delegationDepth?: number
  readonly certificateThumbprint?: string
}

export interface ExchangeRequest {
  /** The token the holder received (its `aud` must be the holder). */
  readonly token: string
  /** The agent re-delegating. */
  readonly holder: string
  /** The next audience. */
  readonly audience: string
  /** A subset of the token's scopes; default all of them. */
  readonly scope?: readonly string[]
  readonly ttlSeconds?: number
  readonly certificateThumbprint?: string
  /** The holder's mTLS identity when the exchange arrives over the network. */
  readonly peer?: PeerIdentity
}

export interface SpawnRequest {
  readonly parent: string
  readonly child: Omit<AgentDeclarationInput, 'parent'>
}

/** Retire a spawned agent when its task is done: asked by its parent (or any ancestor). */
export interface RetireRequest {
  /** The agent asking: the retired agent's parent or another of its ancestors. */
  readonly parent: string
  /** The spawned agent to retire (with every agent it spawned). */
  readonly agentId: string
}

export type TrustChangeStatus = 'pending' | 'approved' | 'denied'

export interface TrustChangeRequest {
  readonly id: string
  readonly agentId: string
  readonly from: TrustLevel
  readonly to: TrustLevel
  readonly reason: string
  readonly requestedBy: string
  readonly createdAt: string
  status: TrustChangeStatus
  decidedBy?: string
  /** ISO 8601: when the decision was recorded (informative: deciders' clocks differ). */
  decidedAt?: string
  /**
   * The decision's place in the store's total order, assigned by the store in the same
   * atomic step as the decision (never by a client clock): approved changes are applied in
   * this order everywhere.
   */
  decisionSeq?: number
  /** ISO 8601: when an authority first applied the approved change. */
  appliedAt?: string
  note?: string
}

export interface ApprovalDecision {
  readonly approved: boolean
  /** Who decided (a person's identifier). */
  readonly approver: string
  readonly note?: string
}

/** The application's human-in-the-loop: a CLI prompt, a webhook, a chat button. */
export type TrustChangeApprover = (request: Readonly<TrustChangeRequest>) => Promise<ApprovalDecision | undefined>

/** What agents and adapters need from an authority, in-process or remote. */
export interface CapabilityIssuer {
  mint(request: MintRequest): Promise<string>
  mintForTool(request: ToolMintRequest): Promise<{ token: string; scope: string; operation: Operation }>
  exchange(request: ExchangeRequest): Promise<string>
  spawn(request: SpawnRequest): Promise<AgentDeclaration>
  /**
   * Retire a spawned agent whose task is done (optional: an issuer without it leaves spawned
   * agents registered until they are revoked). Returns the ids retired.
   */
  retire?(request: RetireRequest): Promise<string[]>
}

export interface AuthorityOptions {
  readonly manifest: Manifest | ManifestInput
  /**
   * Signing keys: a `KeySet` (e.g. from `createKeyManager`, which persists and rotates them)
   * or persisted records. Default: ephemeral in-memory keys rotated every
   * `authority.keyRotationHours` of the manifest (24 h); call `close()` to stop the timer.
   */
  readonly keys?: KeySet | readonly SigningKeyRecord[]
  /** Where revocations are written (shared with verifiers). Default: in-memory. */
  readonly store?: ReplayRevocationStore
  /**
   * Children one parent may spawn, across every authority sharing the store (counted by the
   * store, atomically with the spawn). Default 1000, at most 100,000.
   */
  readonly maxChildrenPerParent?: number
  /**
   * Retire a spawned agent once neither it nor any of its descendants has been minted for,
   * exchanged for or spawned from for this long, across every authority sharing the store:
   * its tokens die and its parent's child slot is freed. An idle child is retired when it
   * next asks, when its parent is at `maxChildrenPerParent` and spawns again, or by the
   * periodic sweep (every quarter of this time, at most 15 min). From 360 s (longer than any
   * token lives) to 30 days; `false` turns it off. Default 3600 (one hour). Set the same
   * value on every replica.
   */
  readonly retireIdleChildrenAfterSeconds?: number | false
  readonly audit?: AuditLog
  /** Human approval for trust changes. Without one, requests wait for `decideTrustChange`. */
  readonly approver?: TrustChangeApprover
  /**
   * Sign on agent-trust's dedicated crypto thread rather than the event loop: a thread hop
   * of latency per token, another core for ECDSA when many agents mint at once. Pays off
   * when the event loop is the bottleneck and a core is free (an HTTP server under load);
   * costs throughput when every core is already busy. Default false.
   */
  readonly cryptoOffload?: boolean
  /**
   * Where trust-change requests wait and decisions are kept. Default: with a Redis `store`,
   * the same Redis (`RedisTrustChangeStore`: shared by every replica, decisions ordered by
   * the store); else in memory. A `FileTrustChangeStore` lets the operator CLI on the same
   * host list, approve and deny them; see `Authority.syncTrustChanges`.
   */
  readonly trustChanges?: TrustChangeStore
}

export interface TrustChangeDecisionInput {
  readonly approved: boolean
  /** Who decided (a person). */
  readonly decidedBy: string
  readonly note?: string
  /** ISO 8601. */
  readonly decidedAt: string
}

/**
 * Checked atomically with the decision (inside the store's lock): throw a
 * `TrustChangeDenied` to refuse. `all` is every request in the store.
 */
export type TrustChangePrecondition = (request: Readonly<TrustChangeRequest>, all: readonly Readonly<TrustChangeRequest>[]) => void

export interface TrustChangeStore {
  /** Add a new pending request. */
  add(request: TrustChangeRequest): Promise<void>
  get(id: string): Promise<TrustChangeRequest | undefined>
  /** Every request (or those with `status`), oldest first. */
  list(status?: TrustChangeStatus): Promise<TrustChangeRequest[]>
  /**
   * Decide a pending request, atomically: exactly one decision wins; deciding a request
   * that is no longer pending throws `ERR_TRUST_CHANGE_DENIED`.
   */
  decide(id: string, decision: TrustChangeDecisionInput, precondition?: TrustChangePrecondition): Promise<TrustChangeRequest>
  /** Note that an authority applied an approved change (first time wins; idempotent). */
  markApplied(id: string, appliedAt: string): Promise<void>
  close(): Promise<void>
}
