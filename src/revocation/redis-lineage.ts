/**
 * The Redis store's lineage side: spawned agents, their parent links and children, their
 * retirement and idle time, all on shard 0 (one hash tag, so each step is one atomic script),
 * with the quarantines a retirement writes copied to the other shards, where checks read them.
 */
import type { Cluster, Redis } from 'ioredis'
import { StoreUnavailable } from '../errors.js'
import { CMD_IDLE, CMD_REGISTER, CMD_RETIRE, CMD_REVOKE_AGENTS, REVOKE_AGENTS_CHUNK } from './redis-scripts.js'
import {
  AGENT_QUARANTINED,
  RETIRED_TOMBSTONE_MS,
  type LineageStore,
  type SpawnedAgentRecord,
  type SpawnOutcome,
  type SpawnVerdict,
} from './store.js'

/** What the lineage needs from its store: the shard tags, its write path and its bounded reads. */
export interface LineageIo {
  readonly tags: readonly string[]
  write(kind: 'revocation' | 'lineage', cmd: string, args: ReadonlyArray<string | number>): Promise<unknown>
  run<T>(fn: (client: Redis | Cluster) => Promise<T>): Promise<T>
}

const SPAWN_VERDICTS: readonly SpawnVerdict[] = ['ok', 'exists', 'quarantined', 'too-many-children']

export class RedisLineage implements LineageStore {
  readonly #io: LineageIo

  constructor(io: LineageIo) {
    this.#io = io
  }

  async registerAgent(record: SpawnedAgentRecord, maxChildren: number, idleMs = 0): Promise<SpawnOutcome> {
    if (record.ancestors.length === 0) throw new TypeError('a spawned agent has a parent')
    const tag = this.#io.tags[0] as string
    const json = JSON.stringify({ ancestors: record.ancestors, declaration: record.declaration })
    const r = await this.#io.write('lineage', CMD_REGISTER, [
      `${tag}:ag`,
      tag,
      record.id,
      json,
      maxChildren,
      idleMs,
      RETIRED_TOMBSTONE_MS,
      ...record.ancestors,
    ])
    const verdict = Array.isArray(r) && typeof r[0] === 'number' ? SPAWN_VERDICTS[r[0]] : undefined
    const retired = Array.isArray(r) ? r.slice(1) : []
    if (verdict === undefined || !retired.every((x) => typeof x === 'string'))
      throw new StoreUnavailable('the store returned an unexpected reply; the spawn was refused', { details: { rule: 'reply' } })
    await this.#quarantineOnOtherShards(retired as string[])
    return { verdict, retired: retired as string[] }
  }

  /** Touch (or, with `mode: 'sweep'`, only check) spawned agents for idle retirement; returns the ids retired. */
  async idleAgents(ids: readonly string[], idleMs: number, mode: 'touch' | 'sweep'): Promise<string[]> {
    if (ids.length === 0) return []
    const tag = this.#io.tags[0] as string
    const r = await this.#io.write('revocation', CMD_IDLE, [`${tag}:ag`, tag, mode, idleMs, RETIRED_TOMBSTONE_MS, ...ids])
    if (!Array.isArray(r) || !r.every((x) => typeof x === 'string'))
      throw new StoreUnavailable('the store returned an unexpected reply; the call was denied', { details: { rule: 'reply' } })
    await this.#quarantineOnOtherShards(r as string[])
    return r as string[]
  }

  async retireIdleAgents(idleMs: number): Promise<string[]> {
    const tag = this.#io.tags[0] as string
    const out: string[] = []
    let cursor = '0'
    do {
      // (HSCAN NOVALUES needs Redis 7.4: the values are read and dropped.)
      const [next, flat] = await this.#io.run((c) => c.hscan(`${tag}:ag`, cursor, 'COUNT', 500))
      const ids = flat.filter((_, i) => i % 2 === 0)
      for (const id of await this.idleAgents(ids, idleMs, 'sweep')) out.push(id)
      cursor = next
    } while (cursor !== '0')
    return out
  }

  /**
   * Retire a spawned agent and every descendant, in one script on shard 0; the other shards
   * get the same quarantines (in chunks, so that a large lineage never fills the queue).
   */
  async retireAgent(id: string): Promise<string[]> {
    if (typeof id !== 'string' || id.length === 0 || id.length > 512) throw new TypeError('id must be a non-empty string')
    const first = this.#io.tags[0] as string
    const r = await this.#io.write('revocation', CMD_RETIRE, [`${first}:ag`, first, id, RETIRED_TOMBSTONE_MS])
    if (!Array.isArray(r) || !r.every((x) => typeof x === 'string'))
      throw new StoreUnavailable('the store returned an unexpected reply; the retirement is unknown', { details: { rule: 'reply' } })
    await this.#quarantineOnOtherShards(r as string[])
    return r as string[]
  }

  /** The quarantines a lineage script wrote on shard 0, copied to the other shards (in chunks). */
  async #quarantineOnOtherShards(ids: readonly string[]): Promise<void> {
    const rest = this.#io.tags.slice(1)
    for (let i = 0; rest.length > 0 && i < ids.length; i += REVOKE_AGENTS_CHUNK) {
      const chunk = ids.slice(i, i + REVOKE_AGENTS_CHUNK)
      await Promise.all(
        rest.map((tag) =>
          this.#io.write('revocation', CMD_REVOKE_AGENTS, [`${tag}:a:${chunk[0]}`, tag, AGENT_QUARANTINED, RETIRED_TOMBSTONE_MS, ...chunk]),
        ),
      )
    }
  }

  async anyQuarantined(ids: readonly string[]): Promise<boolean> {
    if (ids.length === 0) return false
    const tag = this.#io.tags[0] as string
    const at = await this.#io.run((c) => c.mget(...ids.map((id) => `${tag}:a:${id}`)))
    return at.some((v) => v !== null && Number(v) >= AGENT_QUARANTINED)
  }

  async spawnedAgent(id: string): Promise<SpawnedAgentRecord | undefined> {
    const tag = this.#io.tags[0] as string
    const v = await this.#io.run((c) => c.hget(`${tag}:ag`, id))
    return v === null ? undefined : toRecord(id, v)
  }

  async spawnedAgents(): Promise<SpawnedAgentRecord[]> {
    const tag = this.#io.tags[0] as string
    const out: SpawnedAgentRecord[] = []
    let cursor = '0'
    // HSCAN pages, so that a large lineage never needs one huge reply (each page is bounded by the timeout).
    do {
      const [next, flat] = await this.#io.run((c) => c.hscan(`${tag}:ag`, cursor, 'COUNT', 1000))
      for (let i = 0; i + 1 < flat.length; i += 2) out.push(toRecord(flat[i] as string, flat[i + 1] as string))
      cursor = next
    } while (cursor !== '0')
    return out
  }
}

function toRecord(id: string, json: string): SpawnedAgentRecord {
  try {
    const o = JSON.parse(json) as { ancestors?: unknown; declaration?: unknown }
    if (Array.isArray(o.ancestors) && o.ancestors.every((a) => typeof a === 'string'))
      return { id, ancestors: o.ancestors as string[], declaration: o.declaration }
  } catch {
    // fall through
  }
  throw new StoreUnavailable('a spawned agent record in the store is malformed; the call was denied', { details: { rule: 'lineage' } })
}
