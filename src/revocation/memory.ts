import {
  AGENT_QUARANTINED,
  agentRevocationKeepMs,
  type LineageStore,
  type ReplayRevocationStore,
  type SpawnedAgentRecord,
  type SpawnVerdict,
  type StoreCheck,
  type StoreVerdict,
} from './store.js'

/**
 * In-memory store: the default, for one process. Every operation runs synchronously inside
 * one turn of the event loop, so check-and-consume is atomic under any concurrency within
 * the process. Expired entries are swept incrementally, so memory stays bounded by the
 * number of tokens alive at once.
 */
export class MemoryReplayRevocationStore implements ReplayRevocationStore, LineageStore {
  readonly #used = new Map<string, number>()
  readonly #revokedTokens = new Map<string, number>()
  readonly #revokedAgents = new Map<string, { atSeconds: number; forgetAtMs: number }>()
  readonly #spawned = new Map<string, SpawnedAgentRecord>()
  readonly #childCount = new Map<string, number>()
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

  async registerAgent(record: SpawnedAgentRecord, maxChildren: number): Promise<SpawnVerdict> {
    if (this.#spawned.has(record.id)) return 'exists'
    if (this.#quarantined(record.ancestors)) return 'quarantined'
    const parent = record.ancestors[0] as string
    const n = this.#childCount.get(parent) ?? 0
    if (n >= maxChildren) return 'too-many-children'
    this.#spawned.set(record.id, structuredClone(record))
    this.#childCount.set(parent, n + 1)
    return 'ok'
  }

  async anyQuarantined(ids: readonly string[]): Promise<boolean> {
    return this.#quarantined(ids)
  }

  /** Synchronous form of {@link anyQuarantined}, for callers that want to skip a microtask. */
  anyQuarantinedNow(ids: readonly string[]): boolean {
    return this.#quarantined(ids)
  }

  async spawnedAgent(id: string): Promise<SpawnedAgentRecord | undefined> {
    const r = this.#spawned.get(id)
    return r === undefined ? undefined : structuredClone(r)
  }

  async spawnedAgents(): Promise<SpawnedAgentRecord[]> {
    return [...this.#spawned.values()].map((r) => structuredClone(r))
  }

  #quarantined(ids: readonly string[]): boolean {
    for (const id of ids) if ((this.#revokedAgents.get(id)?.atSeconds ?? 0) >= AGENT_QUARANTINED) return true
    return false
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
