/**
 * Trust-change requests and decisions in the Redis of the replay/revocation store, shared by
 * every authority replica and kept across restarts. The default trust-change store of an
 * authority given a Redis revocation store.
 *
 * Each change is one Lua script, so it is atomic on the server whatever the clients do:
 * - `add` checks the duplicate id, one pending request per requester and agent, the
 *   requester's pending cap and the store's size before writing anything.
 * - `decide` refuses a decision on a request that is not pending, a self-approval and an
 *   approval made against a level the agent no longer has; it takes the decision's sequence
 *   number from `INCR` in the same script, so approved changes are ordered by the store,
 *   never by a decider's clock, and records the agent's level as of that decision.
 *
 * Key layout (`<tag>` is the revocation store's shard-0 hash tag `{<prefix>:0}`):
 *   `<tag>:tc:r`             hash: request id -> request JSON
 *   `<tag>:tc:p:<requester>` hash: agent id -> id of that requester's pending request
 *   `<tag>:tc:seq`           the last decision sequence number
 *   `<tag>:tc:lv:<agent>`    the agent's level after the last approved change, `<level>:<seq>`
 */
import { StoreUnavailable, TrustChangeDenied } from '../errors.js'
import { FailClosedConnection } from '../lib/redis.js'
import { shardTag, type RedisReplayRevocationStore } from '../revocation/redis.js'
import { MAX_PENDING_PER_REQUESTER, MAX_STORED_REQUESTS } from './trust-changes.js'
import type { TrustChangeDecisionInput, TrustChangePrecondition, TrustChangeRequest, TrustChangeStatus, TrustChangeStore } from './types.js'

// KEYS[1]: the request hash (routing). ARGV: tag, id, requester, agent, request JSON, max pending, max stored.
// Returns 0 (stored), or the rule that refused it (nothing written).
const ADD_LUA = `
local tag = ARGV[1]
local rk = tag .. ':tc:r'
if redis.call('HEXISTS', rk, ARGV[2]) == 1 then return 'duplicate-id' end
local pk = tag .. ':tc:p:' .. ARGV[3]
local open = redis.call('HGET', pk, ARGV[4])
if open then return 'duplicate-pending:' .. open end
if redis.call('HLEN', pk) >= tonumber(ARGV[6]) then return 'too-many-pending' end
if redis.call('HLEN', rk) >= tonumber(ARGV[7]) then return 'store-full' end
redis.call('HSET', rk, ARGV[2], ARGV[5])
redis.call('HSET', pk, ARGV[4], ARGV[2])
return 0
`

// KEYS[1]: the request hash (routing). ARGV: tag, id, approved ('1'|'0'), decidedBy, decidedAt, note ('' for none).
// Returns the decided request JSON, or an error rule (nothing written).
const DECIDE_LUA = `
local tag = ARGV[1]
local rk = tag .. ':tc:r'
local raw = redis.call('HGET', rk, ARGV[2])
if not raw then return {err = 'unknown-request'} end
local req = cjson.decode(raw)
if req.status ~= 'pending' then return {err = 'not-pending:' .. tostring(req.status)} end
local approved = ARGV[3] == '1'
if approved and ARGV[4] == req.requestedBy then return {err = 'self-approval'} end
local lk = tag .. ':tc:lv:' .. req.agentId
if approved then
  local cur = redis.call('GET', lk)
  if cur then
    local level = string.sub(cur, 1, 2)
    if level ~= req.from then return {err = 'stale:' .. level} end
  end
end
local seq = redis.call('INCR', tag .. ':tc:seq')
if approved then req.status = 'approved' else req.status = 'denied' end
req.decidedBy = ARGV[4]
req.decidedAt = ARGV[5]
req.decisionSeq = seq
if ARGV[6] ~= '' then req.note = ARGV[6] end
local out = cjson.encode(req)
redis.call('HSET', rk, ARGV[2], out)
local pk = tag .. ':tc:p:' .. req.requestedBy
if redis.call('HGET', pk, req.agentId) == ARGV[2] then redis.call('HDEL', pk, req.agentId) end
if approved then redis.call('SET', lk, req.to .. ':' .. seq) end
return out
`

// KEYS[1]: the request hash (routing). ARGV: tag, id, appliedAt. First time wins.
const APPLIED_LUA = `
local rk = ARGV[1] .. ':tc:r'
local raw = redis.call('HGET', rk, ARGV[2])
if not raw then return 0 end
local req = cjson.decode(raw)
if req.appliedAt ~= nil then return 0 end
req.appliedAt = ARGV[3]
redis.call('HSET', rk, ARGV[2], cjson.encode(req))
return 1
`

const CMD_ADD = 'agentTrustTrustChangeAddV1'
const CMD_DECIDE = 'agentTrustTrustChangeDecideV1'
const CMD_APPLIED = 'agentTrustTrustChangeAppliedV1'

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>

/**
 * Trust changes in the Redis of a {@link RedisReplayRevocationStore}, on its connection and
 * under its prefix (shard 0's hash tag, so that every script stays in one Cluster slot).
 * Closing it leaves the revocation store's connection open.
 */
export class RedisTrustChangeStore implements TrustChangeStore {
  readonly #conn: FailClosedConnection
  readonly #tag: string

  constructor(store: RedisReplayRevocationStore) {
    this.#tag = shardTag(store.prefix, 0)
    this.#conn = new FailClosedConnection({ redis: store.client }, store.commandTimeoutMs)
    const c = store.client
    c.defineCommand(CMD_ADD, { lua: ADD_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_DECIDE, { lua: DECIDE_LUA, numberOfKeys: 1 })
    c.defineCommand(CMD_APPLIED, { lua: APPLIED_LUA, numberOfKeys: 1 })
  }

  // Every script declares the request hash as its one key: on a Cluster that routes it to the
  // master of the tag's slot, which holds every key the script derives from the tag.
  #script(name: string, ...args: Array<string | number>): Promise<unknown> {
    return this.#conn.run((c) => (c as unknown as Record<string, ScriptFn>)[name]!(`${this.#tag}:tc:r`, ...args))
  }

  async add(request: TrustChangeRequest): Promise<void> {
    const r = await this.#script(
      CMD_ADD,
      this.#tag,
      request.id,
      request.requestedBy,
      request.agentId,
      JSON.stringify(request),
      MAX_PENDING_PER_REQUESTER,
      MAX_STORED_REQUESTS,
    )
    if (r === 0) return
    const rule = typeof r === 'string' ? r : ''
    if (rule === 'duplicate-id') throw new TrustChangeDenied('duplicate request id', { details: { rule } })
    if (rule.startsWith('duplicate-pending:'))
      throw new TrustChangeDenied(
        `a request for "${request.agentId}" by this requester is already pending (${rule.slice(18, 82)}): decide or withdraw it first`,
        { details: { agentId: request.agentId, rule: 'duplicate-pending' } },
      )
    if (rule === 'too-many-pending')
      throw new TrustChangeDenied(`this requester already has ${MAX_PENDING_PER_REQUESTER} pending requests`, { details: { rule } })
    if (rule === 'store-full')
      throw new TrustChangeDenied(`the trust-change store holds ${MAX_STORED_REQUESTS} requests: prune decided ones`, {
        details: { rule },
      })
    throw new StoreUnavailable('the trust-change store returned an unexpected reply; the request was refused', {
      details: { rule: 'reply' },
    })
  }

  async get(id: string): Promise<TrustChangeRequest | undefined> {
    const v = await this.#conn.run((c) => c.hget(`${this.#tag}:tc:r`, id))
    return v === null ? undefined : toRequest(v)
  }

  async list(status?: TrustChangeStatus): Promise<TrustChangeRequest[]> {
    const out: TrustChangeRequest[] = []
    let cursor = '0'
    // HSCAN pages: a full store (50,000 requests) never needs one huge reply.
    do {
      const [next, flat] = await this.#conn.run((c) => c.hscan(`${this.#tag}:tc:r`, cursor, 'COUNT', 1000))
      for (let i = 1; i < flat.length; i += 2) {
        const r = toRequest(flat[i] as string)
        if (status === undefined || r.status === status) out.push(r)
      }
      cursor = next
    } while (cursor !== '0')
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  }

  async decide(id: string, decision: TrustChangeDecisionInput, precondition?: TrustChangePrecondition): Promise<TrustChangeRequest> {
    if (typeof decision.decidedBy !== 'string' || decision.decidedBy.trim().length === 0)
      throw new TrustChangeDenied('a decision must name its approver')
    if (decision.approved && precondition !== undefined) {
      // Checks that need the whole store (a spawned agent's parent's level) run on a fresh
      // read; the agent's own level is checked again inside the decision script.
      const all = await this.list()
      const req = all.find((r) => r.id === id)
      if (req !== undefined && req.status === 'pending') precondition(req, all)
    }
    const decidedBy = decision.decidedBy.slice(0, 128)
    let raw: unknown
    try {
      raw = await this.#script(
        CMD_DECIDE,
        this.#tag,
        String(id),
        decision.approved ? '1' : '0',
        decidedBy,
        decision.decidedAt,
        decision.note === undefined ? '' : decision.note.slice(0, 500),
      )
    } catch (e) {
      throw refusal(e) ?? e
    }
    if (typeof raw !== 'string')
      throw new StoreUnavailable('the trust-change store returned an unexpected reply; the decision is unknown', {
        details: { rule: 'reply' },
      })
    return toRequest(raw)
  }

  async markApplied(id: string, appliedAt: string): Promise<void> {
    await this.#script(CMD_APPLIED, this.#tag, id, appliedAt)
  }

  /** Nothing to release: the connection is the revocation store's. */
  async close(): Promise<void> {}
}

/** A script's refusal as a coded error; anything else is not a refusal. */
function refusal(e: unknown): TrustChangeDenied | undefined {
  const cause = (e as { cause?: unknown }).cause ?? e
  const msg = cause instanceof Error ? cause.message : ''
  const m = /^(?:ERR\s+)?(?:Error running script[^:]*:\s*)?(unknown-request|not-pending|self-approval|stale)(?::(\S+))?/.exec(msg)
  if (m === null) return undefined
  const rule = m[1] as string
  if (rule === 'unknown-request') return new TrustChangeDenied('no such trust-change request', { details: { rule } })
  if (rule === 'not-pending') return new TrustChangeDenied(`the request was already ${m[2] ?? 'decided'}`, { details: { rule } })
  if (rule === 'self-approval')
    return new TrustChangeDenied('the requester cannot approve its own request: another operator must decide', { details: { rule } })
  return new TrustChangeDenied(
    `the agent is now ${(m[2] ?? '?').slice(0, 2)}, not the level the request was made for; file a new request`,
    {
      details: { rule },
    },
  )
}

function toRequest(json: string): TrustChangeRequest {
  try {
    const o = JSON.parse(json) as TrustChangeRequest
    if (typeof o?.id === 'string' && typeof o.agentId === 'string' && typeof o.status === 'string') return o
  } catch {
    // fall through
  }
  throw new StoreUnavailable('a trust-change request in the store is malformed; the call was denied', { details: { rule: 'malformed' } })
}
