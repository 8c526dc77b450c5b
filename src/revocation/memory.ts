import {
  AGENT_QUARANTINED,
  agentRevocationKeepMs,
  RETIRED_TOMBSTONE_MS,
  type LineageStore,
  type ReplayRevocationStore,
  type SpawnedAgentRecord,
  type SpawnOutcome,
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
  readonly #children = new Map<string, Set<string>>()
  /** Spawned agents under idle retirement: when each becomes idle, epoch ms. */
  readonly #idleAt = new Map<string, number>()
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

  async registerAgent(record: SpawnedAgentRecord, maxChildren: number, idleMs = 0): Promise<SpawnOutcome> {
    if (this.#spawned.has(record.id) || this.#quarantined([record.id])) return { verdict: 'exists', retired: [] }
    if (this.#quarantined(record.ancestors)) return { verdict: 'quarantined', retired: [] }
    const parent = record.ancestors[0] as string
    const retired: string[] = []
    if (idleMs > 0 && (this.#children.get(parent)?.size ?? 0) >= maxChildren)
      for (const c of [...(this.#children.get(parent) ?? [])]) if (this.#isIdle(c)) retired.push(...this.#retire(c))
    const siblings = this.#children.get(parent) ?? new Set<string>()
    if (siblings.size >= maxChildren) return { verdict: 'too-many-children', retired }
    this.#spawned.set(record.id, structuredClone(record))
    siblings.add(record.id)
    this.#children.set(parent, siblings)
    if (idleMs > 0) this.#idleAt.set(record.id, this.#now() + idleMs)
    return { verdict: 'ok', retired }
  }

  async idleAgents(ids: readonly string[], idleMs: number, mode: 'touch' | 'sweep'): Promise<string[]> {
    const out: string[] = []
    for (const id of ids) {
      if (this.#isIdle(id)) out.push(...this.#retire(id))
      else if (mode === 'touch' && this.#spawned.has(id)) this.#idleAt.set(id, this.#now() + idleMs)
    }
    return out
  }

  async retireIdleAgents(idleMs: number): Promise<string[]> {
    return this.idleAgents([...this.#spawned.keys()], idleMs, 'sweep')
  }

  #isIdle(id: string): boolean {
    if (!this.#spawned.has(id)) return false
    const at = this.#idleAt.get(id)
    return at === undefined || at <= this.#now()
  }

  async retireAgent(id: string): Promise<string[]> {
    return this.#retire(id)
  }

  #retire(id: string): string[] {
    const record = this.#spawned.get(id)
    if (record === undefined) return []
    const out = [id]
    for (let i = 0; i < out.length; i++) {
      const x = out[i] as string
      for (const c of this.#children.get(x) ?? []) if (this.#spawned.has(c)) out.push(c)
      this.#children.delete(x)
      this.#spawned.delete(x)
      this.#idleAt.delete(x)
      const prev = this.#revokedAgents.get(x)
      this.#revokedAgents.set(x, {
        atSeconds: AGENT_QUARANTINED,
        forgetAtMs: Math.max(prev?.forgetAtMs ?? 0, this.#now() + RETIRED_TOMBSTONE_MS),
      })
    }
    this.#children.get(record.ancestors[0] as string)?.delete(id)
    return out
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
