/**
 * The replay and revocation store. One interface, two
 * implementations: in-memory (default, one process) and Redis (`agent-trust/revocation/redis`).
 *
 * `check` is the only per-call operation and must be one atomic step (one round trip for
 * Redis): revocation of the token, of its chain ancestors and of every agent it speaks for,
 * then, if nothing is revoked and `consume` is set, consumption of the jti.
 */
export type StoreVerdict = 'ok' | 'token-revoked' | 'agent-revoked' | 'replayed'

export interface StoreCheck {
  readonly jti: string
  /** Ancestor jtis (the token's `chain` claim); revoking any of them revokes this one. */
  readonly chain: readonly string[]
  /** Subject and actors: an agent revoked at T kills every token with `iat <= T`. */
  readonly agents: readonly string[]
  /** Token issued-at, epoch seconds. */
  readonly iat: number
  /** When the jti marker may be forgotten, epoch ms (`exp` + tolerance). */
  readonly forgetAtMs: number
  /** Consume the jti (single use). False for a check without use (token exchange). */
  readonly consume: boolean
}

/**
 * `revokeAgent(id, AGENT_QUARANTINED)` quarantines an agent: every token of it, issued before
 * or after, is rejected by every verifier sharing the store, whichever authority minted it.
 * (A revocation at "now" only kills the tokens issued so far: what a trust change needs.)
 * Stores keep a quarantine for a year, not a day. 2^40 s is far beyond any real `iat`.
 */
export const AGENT_QUARANTINED = 2 ** 40

/** How long stores keep an agent revocation: longer than any token lives; a year for a quarantine. */
export function agentRevocationKeepMs(atSeconds: number): number {
  return atSeconds >= AGENT_QUARANTINED ? 366 * 24 * 3600 * 1000 : 24 * 3600 * 1000
}

/**
 * How long a retired agent's id stays quarantined (and so taken): far longer than any of its
 * tokens can live, short enough that a system spawning a child per task does not keep one
 * key per task for a year.
 */
export const RETIRED_TOMBSTONE_MS = 24 * 3600 * 1000

/**
 * An agent registered by `Authority.spawn`, as the store keeps it: its declaration (plain
 * JSON, validated again when read) and its ancestors, parent first.
 */
export interface SpawnedAgentRecord {
  readonly id: string
  readonly ancestors: readonly string[]
  readonly declaration: unknown
}

/** `registerAgent` verdict: recorded, or why not (nothing is written unless `ok`). */
export type SpawnVerdict = 'ok' | 'exists' | 'quarantined' | 'too-many-children'

/** `registerAgent` outcome: the verdict, and the parent's idle children retired to make room. */
export interface SpawnOutcome {
  readonly verdict: SpawnVerdict
  readonly retired: readonly string[]
}

/**
 * Lineage: spawned agents and their parent links, shared by every authority using the store
 * and kept across restarts. Both built-in stores implement it; an authority over a store
 * without it keeps spawned agents in its own memory only.
 *
 * Idle retirement (`idleMs` > 0): a spawned agent registered with it is retired once neither
 * it nor any descendant has acted (been touched) for `idleMs`: when a touch or a sweep finds
 * it idle, or when its parent is at its cap and spawns again.
 */
export interface LineageStore {
  /**
   * Atomically: refuse an id already registered or retired, refuse when any ancestor is
   * quarantined, refuse when the parent (`ancestors[0]`) already has `maxChildren` live
   * children (with idle retirement, after retiring the idle ones); else record.
   */
  registerAgent(record: SpawnedAgentRecord, maxChildren: number, idleMs?: number): Promise<SpawnOutcome>
  /**
   * Atomically retire a spawned agent and every descendant the store knows: their records
   * are deleted, their ids quarantined for at least {@link RETIRED_TOMBSTONE_MS} (every token
   * dies, no id is reused meanwhile), and the parent's child slot is freed. Returns the ids
   * retired, the agent first; empty when it is not registered (never spawned or retired).
   */
  retireAgent(id: string): Promise<string[]>
  /**
   * For each spawned agent among `ids` (others are skipped): retire it (with its descendants)
   * if it is idle; else, with `touch`, restart its idle time. Returns the ids retired.
   */
  idleAgents(ids: readonly string[], idleMs: number, mode: 'touch' | 'sweep'): Promise<string[]>
  /** Retire every idle spawned agent (a sweep, paged). Returns the ids retired. */
  retireIdleAgents(idleMs: number): Promise<string[]>
  /** Whether any of `ids` is quarantined (one round trip). */
  anyQuarantined(ids: readonly string[]): Promise<boolean>
  /** One spawned agent, or undefined. */
  spawnedAgent(id: string): Promise<SpawnedAgentRecord | undefined>
  /** Every spawned agent (at start-up). */
  spawnedAgents(): Promise<SpawnedAgentRecord[]>
}

/**
 * What a store with its own clock answers for the agents of a mint, in one round trip: any
 * quarantine among them, each one's level after its last approved trust change, each one's
 * latest revocation time, and the store's clock. Tokens are then dated by the store, the
 * same clock that dates revocations, so a token minted before a revocation never carries a
 * later `iat` whatever the replicas' clocks say.
 */
export interface AgentStoreStates {
  readonly quarantined: boolean
  readonly levels: readonly (string | undefined)[]
  /** Latest revocation time per id, epoch seconds (undefined: none). */
  readonly revokedAt: readonly (number | undefined)[]
  /** The store's clock, epoch seconds. */
  readonly nowSeconds: number
}

/** A store that keeps trust levels and dates revocations by its own clock (the Redis store). */
export interface StoreClock {
  trustStates(ids: readonly string[]): Promise<AgentStoreStates>
  /**
   * Revoke every token of `agentId` issued up to the store's clock now (or a later time
   * already stored), atomically; returns the time used, epoch seconds.
   */
  revokeAgentNow(agentId: string): Promise<number>
}

export function hasStoreClock(s: unknown): s is StoreClock {
  const o = s as Partial<StoreClock> | undefined
  return typeof o?.trustStates === 'function' && typeof o.revokeAgentNow === 'function'
}

export function isLineageStore(s: unknown): s is LineageStore {
  const o = s as Partial<LineageStore> | undefined
  return (
    typeof o?.registerAgent === 'function' &&
    typeof o.retireAgent === 'function' &&
    typeof o.idleAgents === 'function' &&
    typeof o.retireIdleAgents === 'function' &&
    typeof o.anyQuarantined === 'function' &&
    typeof o.spawnedAgent === 'function' &&
    typeof o.spawnedAgents === 'function'
  )
}

export interface ReplayRevocationStore {
  /** Atomic check (and consume). Throws `ERR_STORE_UNAVAILABLE` when the backend cannot answer in time. */
  check(input: StoreCheck): Promise<StoreVerdict>
  /** Revoke one token (and so its descendants) until `forgetAtMs`. */
  revokeToken(jti: string, forgetAtMs: number): Promise<void>
  /**
   * Revoke every token of `agentId` issued at or before `atSeconds` (`AGENT_QUARANTINED`:
   * every token, ever). Later revocations keep the latest time.
   */
  revokeAgent(agentId: string, atSeconds: number): Promise<void>
  /**
   * Optional: `revokeAgent` for many agents at once, in as few round trips as the store can
   * (a quarantined lineage). Without it, the authority calls `revokeAgent` for each, a bounded
   * number at a time.
   */
  revokeAgents?(agentIds: readonly string[], atSeconds: number): Promise<void>
  /** Release connections and timers. */
  close(): Promise<void>
}
