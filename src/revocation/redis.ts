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
  RETIRED_TOMBSTONE_MS,
  type AgentStoreStates,
  type LineageStore,
  type ReplayRevocationStore,
  type StoreClock,
  type SpawnedAgentRecord,
  type SpawnOutcome,
  type SpawnVerdict,
  type StoreCheck,
  type StoreVerdict,
} from './store.js'

export { failClosedRedisOptions } from '../lib/redis.js'
export type { AdmissionOptions, RedisConnectionOptions } from '../lib/redis.js'
export type { ReplicaAcksOptions } from './replication.js'

/**
 * Agent ids per revocation script in {@link RedisReplayRevocationStore.revokeAgents}: about
 * 1,500 Redis calls inside one script (well under a millisecond of the server's single
 * thread, so checks of other tokens wait at most that long behind it), and at most ~256 KB
 * of arguments (ids are at most 512 chars).
 */
export const REVOKE_AGENTS_CHUNK = 500

/** Default bound on every store call, in milliseconds. */
export const DEFAULT_STORE_TIMEOUT_MS = 200
/** An agent revocation is kept far longer than any token (300 s) can live. */
/** A marker never lives longer than this, whatever `forgetAtMs` says (tokens live <= 300 s). */
const MAX_MARKER_MS = 3600 * 1000
/** Consumes whose outcome is unknown, remembered for a retry (oldest forgotten first beyond this). */
const MAX_UNSETTLED = 100_000
const PREFIX = /^[A-Za-z0-9._:/@+-]{1,64}$/

// KEYS[1]: the jti's single-use marker. ARGV: tag, consume ('1'|'0'), marker ttl ms, iat,
// attempt nonce, number of token ids n, then n token ids (the jti first, then its
// ancestors), then agents. Revocation keys are derived from the tag: same hash slot as
// KEYS[1] by construction. The marker holds the nonce of the attempt that consumed it: a
// retry carrying the same nonce (the same store instance, after an attempt whose reply was
// lost) is that attempt, not a replay.
const CHECK_LUA = `
local tag = ARGV[1]
local n = tonumber(ARGV[6])
local tk = {}
for i = 1, n do tk[i] = tag .. ':t:' .. ARGV[6 + i] end
if redis.call('EXISTS', unpack(tk)) > 0 then return 1 end
local na = #ARGV - 6 - n
if na > 0 then
  local ak = {}
  for i = 1, na do ak[i] = tag .. ':a:' .. ARGV[6 + n + i] end
  local at = redis.call('MGET', unpack(ak))
  local iat = tonumber(ARGV[4])
  for i = 1, na do
    local v = at[i]
    if v and iat <= tonumber(v) then return 2 end
  end
end
if ARGV[2] == '1' then
  if not redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[3], 'NX') then
    if redis.call('GET', KEYS[1]) ~= ARGV[5] then return 3 end
  end
end
return 0
`

// KEYS[1]: revoked-token key. ARGV[1]: ttl ms. Never shortens an existing revocation.
const REVOKE_TOKEN_LUA = `
local t = redis.call('PTTL', KEYS[1])
if t == -1 then return 0 end
if t < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 0
`

// KEYS[1]: revoked-agent key. ARGV[1]: revoked-at, epoch seconds. ARGV[2]: keep ms.
// Keeps the latest revocation time and the longest expiry.
const REVOKE_AGENT_LUA = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1
local at = tonumber(ARGV[1])
if cur > at then at = cur end
local keep = tonumber(ARGV[2])
local t = redis.call('PTTL', KEYS[1])
if t == -1 then
  redis.call('SET', KEYS[1], string.format('%d', at), 'KEEPTTL')
  return 0
end
if t > keep then keep = t end
redis.call('SET', KEYS[1], string.format('%d', at), 'PX', keep)
return 0
`

// KEYS[1]: the first agent's revoked-agent key (routing only: every key written is derived
// from the tag, so shares its slot). ARGV: tag, revoked-at (epoch seconds), keep ms, then the
// agent ids. REVOKE_AGENT_LUA for each id, in one step: a quarantine of a large lineage is a
// few hundred script calls, not one call per descendant.
const REVOKE_AGENTS_LUA = `
local tag = ARGV[1]
local at0 = tonumber(ARGV[2])
local keep0 = tonumber(ARGV[3])
for i = 4, #ARGV do
  local k = tag .. ':a:' .. ARGV[i]
  local cur = tonumber(redis.call('GET', k) or '-1') or -1
  local at = at0
  if cur > at then at = cur end
  local t = redis.call('PTTL', k)
  if t == -1 then
    redis.call('SET', k, string.format('%d', at), 'KEEPTTL')
  else
    local keep = keep0
    if t > keep then keep = t end
    redis.call('SET', k, string.format('%d', at), 'PX', keep)
  end
end
return 0
`

// KEYS[1]: revoked-agent key on shard 0. ARGV[1]: keep ms. Revokes up to the server's clock
// (TIME), or past the previous revocation: tokens minted after it are dated one second later
// (its minimum iat), and they must die too. Returns the time used; a quarantine stays.
const REVOKE_AGENT_NOW_LUA = `
local now = tonumber(redis.call('TIME')[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1
local at = now
if cur >= ${2 ** 40} then at = cur elseif cur + 1 > at then at = cur + 1 end
local keep = tonumber(ARGV[1])
local t = redis.call('PTTL', KEYS[1])
if t == -1 then
  redis.call('SET', KEYS[1], string.format('%d', at), 'KEEPTTL')
  return at
end
if t > keep then keep = t end
redis.call('SET', KEYS[1], string.format('%d', at), 'PX', keep)
return at
`

// KEYS[1]: the trust-change counter of shard 0 (routing only: every key read shares its
// tag). ARGV: tag, then the agent ids. Read-only. Returns the server's clock (TIME, epoch
// seconds), then each agent's revocation time, then each one's stored level ('' for none).
const TRUST_STATES_LUA = `
local tag = ARGV[1]
local n = #ARGV - 1
local ak, lk = {}, {}
for i = 1, n do
  ak[i] = tag .. ':a:' .. ARGV[1 + i]
  lk[i] = tag .. ':tc:lv:' .. ARGV[1 + i]
end
local out = {redis.call('TIME')[1]}
if n == 0 then return out end
local a = redis.call('MGET', unpack(ak))
local l = redis.call('MGET', unpack(lk))
for i = 1, n do out[#out + 1] = a[i] or '' end
for i = 1, n do out[#out + 1] = l[i] or '' end
return out
`

// Lua shared by the lineage scripts. `retire(ag, tag, id, keep)` retires a spawned agent and,
// breadth first through the children sets, every descendant: each record is deleted, each id
// quarantined for at least `keep` ms (every token dies, the id stays taken), and the parent's
// child slot is freed. Returns the ids retired, the agent first; none when it is not
// registered (never spawned, or already retired). `idle(tag, id)`: registered with idle
// retirement and not seen within its idle time (its activity key expired).
const LINEAGE_FNS = `
local function retire(ag, tag, id0, keep)
  local rec = redis.call('HGET', ag, id0)
  if not rec then return {} end
  local out = {id0}
  local i = 1
  while i <= #out do
    local id = out[i]
    local kk = tag .. ':kids:' .. id
    local kids = redis.call('SMEMBERS', kk)
    for j = 1, #kids do
      if redis.call('HEXISTS', ag, kids[j]) == 1 then out[#out + 1] = kids[j] end
    end
    redis.call('DEL', kk, tag .. ':ch:' .. id, tag .. ':seen:' .. id)
    redis.call('HDEL', ag, id)
    local ak = tag .. ':a:' .. id
    local t = redis.call('PTTL', ak)
    if t ~= -1 then
      local k = keep
      if t > k then k = t end
      redis.call('SET', ak, '${2 ** 40}', 'PX', k)
    else
      redis.call('SET', ak, '${2 ** 40}', 'KEEPTTL')
    end
    i = i + 1
  end
  local ok, parsed = pcall(cjson.decode, rec)
  local parent = ok and type(parsed) == 'table' and type(parsed.ancestors) == 'table' and parsed.ancestors[1]
  if type(parent) == 'string' then
    local ck = tag .. ':ch:' .. parent
    if tonumber(redis.call('GET', ck) or '0') > 1 then redis.call('DECR', ck) else redis.call('DEL', ck) end
    redis.call('SREM', tag .. ':kids:' .. parent, id0)
  end
  return out
end
local function idle(ag, tag, id)
  return redis.call('HEXISTS', ag, id) == 1 and redis.call('EXISTS', tag .. ':seen:' .. id) == 0
end
`

// KEYS[1]: the spawned-agents hash. ARGV: tag, id, record JSON, max children, idle ms (0:
// no idle retirement), tombstone keep ms, then the ancestors, parent first. Refuses an
// existing id, a quarantined (or retired) id, a quarantined ancestor, a full parent (after
// retiring the parent's idle children, when idle retirement is on); records the child under
// its parent's children set. Returns the verdict, then the ids retired as idle.
const REGISTER_LUA = `${LINEAGE_FNS}
local tag = ARGV[1]
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return {1} end
local own = redis.call('GET', tag .. ':a:' .. ARGV[2])
if own and tonumber(own) >= ${2 ** 40} then return {1} end
local ak = {}
for i = 7, #ARGV do ak[#ak + 1] = tag .. ':a:' .. ARGV[i] end
local at = redis.call('MGET', unpack(ak))
for i = 1, #ak do
  local v = at[i]
  if v and tonumber(v) >= ${2 ** 40} then return {2} end
end
local parent = ARGV[7]
local ck = tag .. ':ch:' .. parent
local idleMs = tonumber(ARGV[5])
local res = {0}
if idleMs > 0 and tonumber(redis.call('GET', ck) or '0') >= tonumber(ARGV[4]) then
  local kids = redis.call('SMEMBERS', tag .. ':kids:' .. parent)
  for j = 1, #kids do
    if idle(KEYS[1], tag, kids[j]) then
      local gone = retire(KEYS[1], tag, kids[j], tonumber(ARGV[6]))
      for g = 1, #gone do res[#res + 1] = gone[g] end
    end
  end
end
if tonumber(redis.call('GET', ck) or '0') >= tonumber(ARGV[4]) then res[1] = 3 return res end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('INCR', ck)
redis.call('SADD', tag .. ':kids:' .. parent, ARGV[2])
if idleMs > 0 then redis.call('SET', tag .. ':seen:' .. ARGV[2], '1', 'PX', idleMs) end
return res
`

// KEYS[1]: the spawned-agents hash. ARGV: tag, id, tombstone keep ms. See retire() above.
const RETIRE_LUA = `${LINEAGE_FNS}
return retire(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
`

// KEYS[1]: the spawned-agents hash. ARGV: tag, mode ('touch' | 'sweep'), idle ms, tombstone
// keep ms, then agent ids. Each id not registered (a manifest agent) is skipped; each one
// idle is retired with its descendants; with 'touch', every other one's idle time restarts.
// Returns the ids retired.
const IDLE_LUA = `${LINEAGE_FNS}
local tag = ARGV[1]
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  if idle(KEYS[1], tag, id) then
    local gone = retire(KEYS[1], tag, id, tonumber(ARGV[4]))
    for g = 1, #gone do out[#out + 1] = gone[g] end
  elseif ARGV[2] == 'touch' and redis.call('HEXISTS', KEYS[1], id) == 1 then
    redis.call('SET', tag .. ':seen:' .. id, '1', 'PX', ARGV[3])
  end
end
return out
`
const SPAWN_VERDICTS: readonly SpawnVerdict[] = ['ok', 'exists', 'quarantined', 'too-many-children']

const VERDICTS: readonly StoreVerdict[] = ['ok', 'token-revoked', 'agent-revoked', 'replayed']

/** The Lua source of the check, for benchmarks and operators who pre-load scripts. */
export const CHECK_SCRIPT: string = CHECK_LUA
/** The Lua source of the read a mint makes (quarantines, levels, revocation times, `TIME`), for benchmarks. */
export const TRUST_STATES_SCRIPT: string = TRUST_STATES_LUA

// Names under which the scripts are defined on the client (versioned: a changed script gets a new name).
const CMD_CHECK = 'agentTrustCheckV2'
const CMD_REVOKE_TOKEN = 'agentTrustRevokeTokenV1'
const CMD_REVOKE_AGENT = 'agentTrustRevokeAgentV1'
const CMD_REVOKE_AGENTS = 'agentTrustRevokeAgentsV1'
const CMD_REGISTER = 'agentTrustRegisterAgentV3'
const CMD_RETIRE = 'agentTrustRetireAgentV2'
const CMD_IDLE = 'agentTrustIdleAgentsV1'
const CMD_REVOKE_AGENT_NOW = 'agentTrustRevokeAgentNowV1'
const CMD_TRUST_STATES = 'agentTrustTrustStatesV1'

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
    const c = this.#conn.client
    // defineCommand: EVALSHA by SHA1, EVAL (which loads the script) on NOSCRIPT or on a new connection.
    c.defineCommand(CMD_CHECK, { lua: CHECK_LUA })
    c.defineCommand(CMD_REVOKE_TOKEN, { lua: REVOKE_TOKEN_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_REVOKE_AGENT, { lua: REVOKE_AGENT_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_REVOKE_AGENTS, { lua: REVOKE_AGENTS_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_REGISTER, { lua: REGISTER_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_RETIRE, { lua: RETIRE_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_IDLE, { lua: IDLE_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_REVOKE_AGENT_NOW, { lua: REVOKE_AGENT_NOW_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_TRUST_STATES, { lua: TRUST_STATES_LUA, numberOfKeys: 1 })
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

  async registerAgent(record: SpawnedAgentRecord, maxChildren: number, idleMs = 0): Promise<SpawnOutcome> {
    if (record.ancestors.length === 0) throw new TypeError('a spawned agent has a parent')
    const tag = this.#tags[0] as string
    const json = JSON.stringify({ ancestors: record.ancestors, declaration: record.declaration })
    const r = await this.#write('lineage', CMD_REGISTER, [
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
    const tag = this.#tags[0] as string
    const r = await this.#write('revocation', CMD_IDLE, [`${tag}:ag`, tag, mode, idleMs, RETIRED_TOMBSTONE_MS, ...ids])
    if (!Array.isArray(r) || !r.every((x) => typeof x === 'string'))
      throw new StoreUnavailable('the store returned an unexpected reply; the call was denied', { details: { rule: 'reply' } })
    await this.#quarantineOnOtherShards(r as string[])
    return r as string[]
  }

  async retireIdleAgents(idleMs: number): Promise<string[]> {
    const tag = this.#tags[0] as string
    const out: string[] = []
    let cursor = '0'
    do {
      // (HSCAN NOVALUES needs Redis 7.4: the values are read and dropped.)
      const [next, flat] = await this.#conn.run((c) => c.hscan(`${tag}:ag`, cursor, 'COUNT', 500))
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
    const first = this.#tags[0] as string
    const r = await this.#write('revocation', CMD_RETIRE, [`${first}:ag`, first, id, RETIRED_TOMBSTONE_MS])
    if (!Array.isArray(r) || !r.every((x) => typeof x === 'string'))
      throw new StoreUnavailable('the store returned an unexpected reply; the retirement is unknown', { details: { rule: 'reply' } })
    await this.#quarantineOnOtherShards(r as string[])
    return r as string[]
  }

  /** The quarantines a lineage script wrote on shard 0, copied to the other shards (in chunks). */
  async #quarantineOnOtherShards(ids: readonly string[]): Promise<void> {
    const rest = this.#tags.slice(1)
    for (let i = 0; rest.length > 0 && i < ids.length; i += REVOKE_AGENTS_CHUNK) {
      const chunk = ids.slice(i, i + REVOKE_AGENTS_CHUNK)
      await Promise.all(
        rest.map((tag) =>
          this.#write('revocation', CMD_REVOKE_AGENTS, [`${tag}:a:${chunk[0]}`, tag, AGENT_QUARANTINED, RETIRED_TOMBSTONE_MS, ...chunk]),
        ),
      )
    }
  }

  async anyQuarantined(ids: readonly string[]): Promise<boolean> {
    if (ids.length === 0) return false
    const tag = this.#tags[0] as string
    const at = await this.#conn.run((c) => c.mget(...ids.map((id) => `${tag}:a:${id}`)))
    return at.some((v) => v !== null && Number(v) >= AGENT_QUARANTINED)
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

  async spawnedAgent(id: string): Promise<SpawnedAgentRecord | undefined> {
    const tag = this.#tags[0] as string
    const v = await this.#conn.run((c) => c.hget(`${tag}:ag`, id))
    return v === null ? undefined : toRecord(id, v)
  }

  async spawnedAgents(): Promise<SpawnedAgentRecord[]> {
    const tag = this.#tags[0] as string
    const out: SpawnedAgentRecord[] = []
    let cursor = '0'
    // HSCAN pages, so that a large lineage never needs one huge reply (each page is bounded by the timeout).
    do {
      const [next, flat] = await this.#conn.run((c) => c.hscan(`${tag}:ag`, cursor, 'COUNT', 1000))
      for (let i = 0; i + 1 < flat.length; i += 2) out.push(toRecord(flat[i] as string, flat[i + 1] as string))
      cursor = next
    } while (cursor !== '0')
    return out
  }

  /** Disconnect (only a client this store created; a client you passed stays yours). */
  async close(): Promise<void> {
    await this.#conn.close()
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
