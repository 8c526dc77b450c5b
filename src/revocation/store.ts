/**
 * The replay and revocation store (DESIGN section 5, steps 5 and 6). One interface, two
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
  /** Release connections and timers. */
  close(): Promise<void>
}
