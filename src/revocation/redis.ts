/**
 * The Redis replay/revocation store, for several
 * verifiers and authority replicas on several machines.
 *
 * Subpath: `agent-trust/revocation/redis` (needs the optional peer `ioredis` 5).
 *
 * - `check` is ONE round trip: a Lua script, loaded once per connection and then called by
 *   SHA (ioredis sends EVALSHA and falls back to EVAL, which reloads it, on `NOSCRIPT`).
 *   It tests the token's jti, its chain ancestors and every agent it speaks for, then
 *   consumes the jti with `SET NX PX` when asked to.
 * - Fails closed: every call settles within about `commandTimeoutMs` (default 200 ms) of
 *   admission and again of sending; the client reconnects by itself.
 * - Admission control: at most `maxInFlight` commands outstanding per connection; up to
 *   `maxQueued` calls wait for a slot. A call refused before anything was sent is denied with
 *   `ERR_STORE_BUSY` (or `ERR_STORE_UNAVAILABLE` rule `not-ready` while disconnected): the
 *   token was not consumed and a retry succeeds. A sent consume with no reply in time is
 *   `ERR_STORE_UNAVAILABLE` rule `outcome-unknown`; its marker carries this instance's
 *   per-attempt nonce, so a retry of the same token here is recognised as that attempt.
 * - Standalone, Sentinel and Cluster. All keys one check touches share one hash tag, so a
 *   script never crosses slots (see `shards` for the Cluster trade-off).
 *
 * Key layout (`<tag>` is `{<prefix>:<shard>}`):
 *   `<tag>:u:<jti>`   single-use marker, expires at the token's `exp` + tolerance
 *   `<tag>:t:<jti>`   revoked token (and so its descendants), expires when the token would have
 *   `<tag>:a:<agent>` revoked agent: the latest revocation time, epoch seconds; kept 24 h (a quarantine: a year)
 *   `<tag0>:ag`       hash: spawned agent id -> `{ancestors, declaration}` JSON (shard 0 only; no expiry)
 *   `<tag0>:ch:<id>`  number of live children the agent has spawned (shard 0 only)
 *   `<tag0>:kids:<id>` set: ids of the agent's live children (shard 0 only; retirement walks it)
 *
 * The check script declares only the marker key and derives the revocation keys from the
 * same tag, so that a verifier's Redis user can be given read-only access to revocations
 * (a compromised verifier cannot lift one): see docs/stores.md for the ACL lines.
 *
 * @module agent-trust/revocation/redis
 */
import type { Cluster, Redis } from 'ioredis'
import { StoreUnavailable } from '../errors.js'
import { randomUUID } from 'node:crypto'
import { notReplicated, parseReplicaAcks, replicationDecision, type ReplicaAcksOptions } from './replication.js'
import { z } from 'zod'
import {
  assertTimeout,
  FailClosedConnection,
  RedisConnectionShape,
  type AdmissionOptions,
  type RedisConnectionOptions,
} from '../lib/redis.js'
import { parseOptions } from '../lib/options.js'
import { RedisCertificateRevocationStore } from './certificates-redis.js'
import {
  AGENT_QUARANTINED,
  agentRevocationKeepMs,
  type AgentStoreStates,
  type LineageStore,
  type ReplayRevocationStore,
  type StoreClock,
  type SpawnedAgentRecord,
  type SpawnOutcome,
  type StoreCheck,
  type StoreVerdict,
} from './store.js'

import {
  CMD_CHECK,
  CMD_REVOKE_AGENT,
  CMD_REVOKE_AGENT_NOW,
  CMD_REVOKE_AGENTS,
  CMD_REVOKE_TOKEN,
  CMD_TRUST_STATES,
  defineStoreScripts,
  REVOKE_AGENTS_CHUNK,
} from './redis-scripts.js'
import { RedisLineage } from './redis-lineage.js'

export { CHECK_SCRIPT, REVOKE_AGENTS_CHUNK, TRUST_STATES_SCRIPT } from './redis-scripts.js'
export { failClosedRedisOptions } from '../lib/redis.js'
export type { AdmissionOptions, RedisConnectionOptions } from '../lib/redis.js'
export type { ReplicaAcksOptions } from './replication.js'

/** Default bound on every store call, in milliseconds. */
export const DEFAULT_STORE_TIMEOUT_MS = 200
/** An agent revocation is kept far longer than any token (300 s) can live. */
/** A marker never lives longer than this, whatever `forgetAtMs` says (tokens live <= 300 s). */
const MAX_MARKER_MS = 3600 * 1000
/** Consumes whose outcome is unknown, remembered for a retry (oldest forgotten first beyond this). */
const MAX_UNSETTLED = 100_000
const PREFIX = /^[A-Za-z0-9._:/@+-]{1,64}$/

const VERDICTS: readonly StoreVerdict[] = ['ok', 'token-revoked', 'agent-revoked', 'replayed']

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>

export interface RedisStoreOptions extends RedisConnectionOptions, AdmissionOptions {
  /**
   * Key prefix, so several deployments share one Redis: 1-64 chars of `[A-Za-z0-9._:/@+-]`
   * (no braces: the store adds its own hash tag). Default `agent-trust`.
   */
  readonly prefix?: string
  /**
   * Bound on every call, in milliseconds: past it the call is denied with
   * `ERR_STORE_UNAVAILABLE`. Default 200 (a loopback round trip is ~0.1 ms).
   */
  readonly commandTimeoutMs?: number
  /**
   * Number of hash-tag shards, default 1. With 1, every key of the deployment lives in one
   * Cluster slot (one master serves it: simple, and revocation is one write). With N > 1,
   * markers spread over N slots by jti, and each revocation is written to all N (a
   * revocation costs N writes; a check stays one round trip). Standalone: leave it at 1.
   */
  readonly shards?: number
  /**
   * Replica acknowledgement: every consuming check and every revocation or lineage write is
   * followed, on the same connection, by `WAIT acks timeoutMs`. Fewer acknowledgements deny
   * the check and reject the revocation (`ERR_STORE_UNAVAILABLE` rule `not-replicated`).
   * Unset (default): the master's answer alone decides, and a failover can lose the last
   * writes. `timeoutMs` must be below `commandTimeoutMs`. See docs/stores.md.
   */
  readonly replicas?: ReplicaAcksOptions
}

type WriteKind = 'check' | 'revocation' | 'lineage'
interface PipelineLike {
  wait(numreplicas: number, timeout: number): unknown
  exec(): Promise<Array<[Error | null, unknown]> | null>
}

/** The hash tag of one shard: `{<prefix>:<shard>}`. */
export function shardTag(prefix: string, shard: number): string {
  return `{${prefix}:${shard}}`
}

/** FNV-1a of the jti, so that a jti always maps to the same shard on every instance. */
export function shardOf(jti: string, shards: number): number {
  if (shards === 1) return 0
  let h = 0x811c9dc5
  for (let i = 0; i < jti.length; i++) {
    h ^= jti.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0) % shards
}

/**
 * Replay and revocation state in Redis. Create one per process and share it between the
 * verifiers and the authority of that process.
 *
 * @example
 * ```ts
 * import { createRedisStore } from 'agent-trust/revocation/redis'
 * const store = createRedisStore({ url: process.env.REDIS_URL, prefix: 'prod-eu' })
 * const verifier = createVerifier({ id: 'agent-database-reader', issuers, store })
 * // ... on shutdown:
 * await store.close()
 * ```
 */
/** {@link RedisStoreOptions}, checked once; `replicas` is checked by `parseReplicaAcks` (its own rules). */
const RedisStoreOptionsSchema = z.strictObject({
  ...RedisConnectionShape,
  prefix: z.string().regex(PREFIX, 'expected 1-64 chars of [A-Za-z0-9._:/@+-] (no braces)').optional(),
  commandTimeoutMs: z.int().min(1).max(60_000).optional(),
  shards: z.int().min(1).max(1024).optional(),
  replicas: z.unknown().optional(),
})

export class RedisReplayRevocationStore implements ReplayRevocationStore, LineageStore, StoreClock {
  readonly prefix: string
  readonly shards: number
  readonly commandTimeoutMs: number
  readonly maxInFlight: number
  readonly maxQueued: number
  /** The replica acknowledgement every write waits for, or undefined (none). */
  readonly replicas: ReplicaAcksOptions | undefined
  readonly #conn: FailClosedConnection
  readonly #tags: readonly string[]
  readonly #lineage: RedisLineage
  /** jti -> nonce of a consume this instance sent without learning its outcome, and when to forget it. */
  readonly #unsettled = new Map<string, { nonce: string; untilMs: number }>()

  constructor(options: RedisStoreOptions = {}) {
    parseOptions('createRedisStore', RedisStoreOptionsSchema, options)
    const { prefix = 'agent-trust', commandTimeoutMs = DEFAULT_STORE_TIMEOUT_MS, shards = 1 } = options
    this.prefix = prefix
    this.shards = shards
    this.commandTimeoutMs = assertTimeout(commandTimeoutMs, 'commandTimeoutMs')
    this.replicas = parseReplicaAcks(options.replicas, this.commandTimeoutMs)
    this.#tags = Array.from({ length: shards }, (_, i) => shardTag(prefix, i))
    this.#conn = new FailClosedConnection(options, this.commandTimeoutMs)
    this.maxInFlight = this.#conn.maxInFlight
    this.maxQueued = this.#conn.maxQueued
    defineStoreScripts(this.#conn.client)
    this.#lineage = new RedisLineage({
      tags: this.#tags,
      write: (kind, cmd, args) => this.#write(kind, cmd, args),
      run: (fn) => this.#conn.run(fn),
    })
  }

  /** The ioredis client (for health checks and metrics; do not change its options). */
  get client(): Redis | Cluster {
    return this.#conn.client
  }

  /**
   * Certificate revocations (serials and SPIFFE identities) in this store's Redis, under its
   * prefix, over its connection: shared by every replica and kept across restarts.
   */
  certificateRevocations(): RedisCertificateRevocationStore {
    return (this.#certificates ??= new RedisCertificateRevocationStore(this.#conn, this.#tags[0] as string, (cmd, args) =>
      this.#write('revocation', cmd, args),
    ))
  }

  #certificates: RedisCertificateRevocationStore | undefined

  /** Commands outstanding and calls waiting for a slot, now. */
  get load(): { inFlight: number; queued: number } {
    return this.#conn.load
  }

  /** Whether the connection is up now. A `false` here means calls are being denied. */
  get ready(): boolean {
    return this.#conn.ready
  }

  check(input: StoreCheck): Promise<StoreVerdict> {
    const { jti, chain, agents, iat, forgetAtMs, consume } = input
    const tag = this.#tags[shardOf(jti, this.shards)] as string
    const ttl = Math.min(MAX_MARKER_MS, Math.max(1000, Math.ceil(forgetAtMs - Date.now())))
    // A retry after an attempt with no reply reuses that attempt's nonce (taken, so only one
    // retry at a time can claim it); every other consume gets a fresh one.
    let nonce = '-'
    if (consume) {
      const prior = this.#unsettled.get(jti)
      if (prior !== undefined) this.#unsettled.delete(jti)
      nonce = prior !== undefined && prior.untilMs > Date.now() ? prior.nonce : randomUUID()
    }
    const args: Array<string | number> = [1, `${tag}:u:${jti}`, tag, consume ? '1' : '0', ttl, iat, nonce, chain.length + 1, jti]
    for (const a of chain) args.push(a)
    for (const a of agents) args.push(a)
    // A non-consuming check writes nothing: no acknowledgement to wait for.
    const p = consume ? this.#write('check', CMD_CHECK, args) : this.#script(CMD_CHECK, args)
    if (!consume) return p.then(toVerdict)
    return p.then(toVerdict, (e: unknown) => {
      // Not answered: the marker may or may not hold this nonce. Remember it, so that this
      // instance's retry of the same token is recognised as the same attempt.
      this.#remember(jti, nonce, forgetAtMs)
      throw e
    })
  }

  /** One script call on its own (no WAIT): a read, or a write when no `replicas` option is set. */
  #script(cmd: string, args: ReadonlyArray<string | number>): Promise<unknown> {
    return this.#conn.run((c) => (c as unknown as Record<string, ScriptFn>)[cmd]!(...args))
  }

  /**
   * Every state write goes through here. Without `replicas`: the script alone. With it: the
   * script and `WAIT acks timeoutMs` in one pipeline, so that both go to the same connection
   * (on a Cluster, the master owning the script's key slot: the pipeline is routed by its
   * keyed command) and WAIT covers this write. The script's reply decides first (an error, or
   * a refusal, which is safe whatever the replicas hold); a reply that allows or applies
   * something (0) stands only if `acks` replicas confirmed it.
   */
  #write(kind: WriteKind, cmd: string, args: ReadonlyArray<string | number>): Promise<unknown> {
    const r = this.replicas
    if (r === undefined) return this.#script(cmd, args)
    return this.#conn
      .run((c) => {
        const p = c.pipeline()
        ;(p as unknown as Record<string, (...a: Array<string | number>) => unknown>)[cmd]!(...args)
        ;(p as unknown as PipelineLike).wait(r.acks, r.timeoutMs)
        return (p as unknown as PipelineLike).exec()
      })
      .then((res) => {
        const [written, waited] = res ?? []
        if (written === undefined || written[0] !== null) {
          throw new StoreUnavailable('the store refused the write; the call was denied', {
            details: { rule: 'error' },
            ...(written?.[0] ? { cause: written[0] } : {}),
          })
        }
        // A refusal (revoked, replayed, spawn refused) wrote nothing that must survive a failover.
        // Revocations always wait: whatever their script returns, they may have written.
        // (A spawn's reply is a list: its verdict, then any idle children it retired first.)
        const v = written[1]
        if (kind !== 'revocation' && (Array.isArray(v) ? v[0] !== 0 && v.length === 1 : v !== 0)) return v
        const acked = waited === undefined || waited[0] !== null ? undefined : waited[1]
        if (replicationDecision(acked, r.acks) !== 'ok') throw notReplicated(kind, acked, r)
        return written[1]
      })
  }

  #remember(jti: string, nonce: string, untilMs: number): void {
    const m = this.#unsettled
    if (m.size >= MAX_UNSETTLED) {
      const now = Date.now()
      for (const [k, v] of m) if (v.untilMs <= now) m.delete(k)
      if (m.size >= MAX_UNSETTLED) m.delete(m.keys().next().value as string)
    }
    m.set(jti, { nonce, untilMs })
  }

  async revokeToken(jti: string, forgetAtMs: number): Promise<void> {
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw new TypeError('jti must be a non-empty string')
    if (!Number.isFinite(forgetAtMs)) throw new TypeError('forgetAtMs must be a finite epoch time in milliseconds')
    const ttl = Math.max(1000, Math.ceil(forgetAtMs - Date.now()))
    // Every shard holds every revocation, so that a check reads its own shard only.
    await Promise.all(this.#tags.map((tag) => this.#write('revocation', CMD_REVOKE_TOKEN, [`${tag}:t:${jti}`, ttl])))
  }

  async revokeAgent(agentId: string, atSeconds: number): Promise<void> {
    if (typeof agentId !== 'string' || agentId.length === 0 || agentId.length > 512)
      throw new TypeError('agentId must be a non-empty string')
    if (!Number.isInteger(atSeconds) || atSeconds < 0) throw new TypeError('atSeconds must be a non-negative integer (epoch seconds)')
    await Promise.all(
      this.#tags.map((tag) =>
        this.#write('revocation', CMD_REVOKE_AGENT, [`${tag}:a:${agentId}`, atSeconds, agentRevocationKeepMs(atSeconds)]),
      ),
    )
  }

  /**
   * {@link revokeAgent} for many agents (a quarantined lineage): one script per shard per
   * {@link REVOKE_AGENTS_CHUNK} ids, one chunk at a time. So a quarantine of 50,000
   * descendants keeps at most `shards` commands in flight and none in the queue: it never
   * fills the admission queue (which would refuse it, and the verifiers sharing this
   * connection, with `ERR_STORE_BUSY`), and checks of other tokens run between its chunks.
   * Resolves once every id is written on every shard; rejects on the first chunk refused
   * (the chunks before it stay written: a revocation is never undone).
   */
  async revokeAgents(agentIds: readonly string[], atSeconds: number): Promise<void> {
    for (const id of agentIds)
      if (typeof id !== 'string' || id.length === 0 || id.length > 512) throw new TypeError('agentId must be a non-empty string')
    if (!Number.isInteger(atSeconds) || atSeconds < 0) throw new TypeError('atSeconds must be a non-negative integer (epoch seconds)')
    const keep = agentRevocationKeepMs(atSeconds)
    for (let i = 0; i < agentIds.length; i += REVOKE_AGENTS_CHUNK) {
      const chunk = agentIds.slice(i, i + REVOKE_AGENTS_CHUNK)
      await Promise.all(
        this.#tags.map((tag) => this.#write('revocation', CMD_REVOKE_AGENTS, [`${tag}:a:${chunk[0]}`, tag, atSeconds, keep, ...chunk])),
      )
    }
  }

  /**
   * Revoke every token of `agentId` issued up to the store's clock (shard 0's master), or a
   * later time already stored; returns that time. The other shards get the same time, so
   * that every verifier, whatever shard its check reads, draws the line at one second.
   */
  async revokeAgentNow(agentId: string): Promise<number> {
    if (typeof agentId !== 'string' || agentId.length === 0 || agentId.length > 512)
      throw new TypeError('agentId must be a non-empty string')
    const keep = agentRevocationKeepMs(0)
    const [first, ...rest] = this.#tags as [string, ...string[]]
    const at = Number(await this.#write('revocation', CMD_REVOKE_AGENT_NOW, [`${first}:a:${agentId}`, keep]))
    if (!Number.isInteger(at) || at < 0)
      throw new StoreUnavailable('the store returned an unexpected reply; the revocation is unknown', { details: { rule: 'reply' } })
    await Promise.all(
      rest.map((tag) => this.#write('revocation', CMD_REVOKE_AGENT, [`${tag}:a:${agentId}`, at, agentRevocationKeepMs(at)])),
    )
    return at
  }

  /**
   * For the agents of a mint, in one round trip (a read-only script on shard 0): whether any
   * is quarantined, each one's level after its last approved trust change (written by the
   * Redis trust-change store under the same tag), each one's latest revocation time, and the
   * server's clock, which dates the token.
   */
  async trustStates(ids: readonly string[]): Promise<AgentStoreStates> {
    const tag = this.#tags[0] as string
    const v = (await this.#conn.run((c) =>
      (c as unknown as Record<string, ScriptFn>)[CMD_TRUST_STATES]!(`${tag}:tc:seq`, tag, ...ids),
    )) as unknown
    const n = ids.length
    if (!Array.isArray(v) || v.length !== 1 + 2 * n || !/^\d{1,12}$/.test(String(v[0])))
      throw new StoreUnavailable('the store returned an unexpected reply; the call was denied', { details: { rule: 'reply' } })
    const revokedAt = v.slice(1, 1 + n).map((x: unknown) => (x === '' ? undefined : Number(x)))
    return {
      nowSeconds: Number(v[0]),
      quarantined: revokedAt.some((x) => x !== undefined && !(x < AGENT_QUARANTINED)),
      revokedAt,
      levels: v.slice(1 + n).map((x: unknown) => (x === '' ? undefined : String(x).slice(0, 2))),
    }
  }

  // ---- lineage (redis-lineage.ts) ------------------------------------------------------

  registerAgent(record: SpawnedAgentRecord, maxChildren: number, idleMs = 0): Promise<SpawnOutcome> {
    return this.#lineage.registerAgent(record, maxChildren, idleMs)
  }

  idleAgents(ids: readonly string[], idleMs: number, mode: 'touch' | 'sweep'): Promise<string[]> {
    return this.#lineage.idleAgents(ids, idleMs, mode)
  }

  retireIdleAgents(idleMs: number): Promise<string[]> {
    return this.#lineage.retireIdleAgents(idleMs)
  }

  retireAgent(id: string): Promise<string[]> {
    return this.#lineage.retireAgent(id)
  }

  anyQuarantined(ids: readonly string[]): Promise<boolean> {
    return this.#lineage.anyQuarantined(ids)
  }

  spawnedAgent(id: string): Promise<SpawnedAgentRecord | undefined> {
    return this.#lineage.spawnedAgent(id)
  }

  spawnedAgents(): Promise<SpawnedAgentRecord[]> {
    return this.#lineage.spawnedAgents()
  }

  /** Disconnect (only a client this store created; a client you passed stays yours). */
  async close(): Promise<void> {
    await this.#conn.close()
  }
}

function toVerdict(r: unknown): StoreVerdict {
  const v = typeof r === 'number' ? VERDICTS[r] : undefined
  if (v === undefined)
    throw new StoreUnavailable('the replay/revocation store returned an unexpected reply; the call was denied', {
      details: { rule: 'reply' },
    })
  return v
}

/**
 * Create the Redis store. Connects at once (in the background); calls made before the
 * first connection completes wait for it up to `commandTimeoutMs`.
 *
 * @example
 * ```ts
 * const store = createRedisStore({ url: 'redis://127.0.0.1:6379', prefix: 'staging' })
 * const cluster = createRedisStore({ nodes: [{ host: '10.0.0.1', port: 7000 }], shards: 16 })
 * const sentinel = createRedisStore({ sentinels: [{ host: '10.0.0.9', port: 26379 }], name: 'mymaster' })
 * ```
 */
export function createRedisStore(options: RedisStoreOptions = {}): RedisReplayRevocationStore {
  return new RedisReplayRevocationStore(options)
}
