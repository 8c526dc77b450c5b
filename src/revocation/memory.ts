import { agentRevocationKeepMs, type ReplayRevocationStore, type StoreCheck, type StoreVerdict } from './store.js'

/**
 * In-memory store: the default, for one process. Every operation runs synchronously inside
 * one turn of the event loop, so check-and-consume is atomic under any concurrency within
 * the process. Expired entries are swept incrementally, so memory stays bounded by the
 * number of tokens alive at once.
 */
export class MemoryReplayRevocationStore implements ReplayRevocationStore {
  readonly #used = new Map<string, number>()
  readonly #revokedTokens = new Map<string, number>()
  readonly #revokedAgents = new Map<string, { atSeconds: number; forgetAtMs: number }>()
  #nextSweepMs = 0
  readonly #now: () => number

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now
  }

  async check(input: StoreCheck): Promise<StoreVerdict> {
    return this.checkSync(input)
  }

  /** Synchronous form, for callers that want to skip a microtask. */
  checkSync(input: StoreCheck): StoreVerdict {
    const now = this.#now()
    if (now >= this.#nextSweepMs) this.#sweep(now)
    if (isLive(this.#revokedTokens.get(input.jti), now)) return 'token-revoked'
    for (const a of input.chain) if (isLive(this.#revokedTokens.get(a), now)) return 'token-revoked'
    for (const agent of input.agents) {
      const r = this.#revokedAgents.get(agent)
      if (r !== undefined && input.iat <= r.atSeconds) return 'agent-revoked'
    }
    if (!input.consume) return 'ok'
    if (isLive(this.#used.get(input.jti), now)) return 'replayed'
    this.#used.set(input.jti, input.forgetAtMs)
    return 'ok'
  }

  async revokeToken(jti: string, forgetAtMs: number): Promise<void> {
    const prev = this.#revokedTokens.get(jti) ?? 0
    this.#revokedTokens.set(jti, Math.max(prev, forgetAtMs))
  }

  async revokeAgent(agentId: string, atSeconds: number): Promise<void> {
    const prev = this.#revokedAgents.get(agentId)
    this.#revokedAgents.set(agentId, {
      atSeconds: Math.max(prev?.atSeconds ?? 0, atSeconds),
      forgetAtMs: Math.max(prev?.forgetAtMs ?? 0, this.#now() + agentRevocationKeepMs(atSeconds)),
    })
  }

  async close(): Promise<void> {
    this.#used.clear()
  }

  /** Number of live single-use markers (for tests and metrics). */
  get size(): number {
    return this.#used.size
  }

  #sweep(now: number): void {
    // Maps iterate in insertion order, and markers are mostly inserted in expiry order.
    for (const [k, v] of this.#used) if (v <= now) this.#used.delete(k)
    for (const [k, v] of this.#revokedTokens) if (v <= now) this.#revokedTokens.delete(k)
    for (const [k, v] of this.#revokedAgents) if (v.forgetAtMs <= now) this.#revokedAgents.delete(k)
    this.#nextSweepMs = now + 1000
  }
}

function isLive(forgetAtMs: number | undefined, now: number): boolean {
  return forgetAtMs !== undefined && forgetAtMs > now
}
