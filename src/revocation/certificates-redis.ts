/**
 * Certificate revocations in Redis, next to the replay/revocation store's keys (same
 * connection, same prefix, shard 0's hash tag, so every script stays in one Cluster slot).
 * Created by `RedisReplayRevocationStore#certificateRevocations()`.
 *
 * Key layout (`<tag>` is `{<prefix>:0}`):
 *   `<tag>:cr`  hash: `s:<serial>` -> forgetAtMs, `i:<spiffe id>` -> `<atMs> <forgetAtMs>`
 *   `<tag>:cf`  sorted set: the same members scored by forgetAtMs (what the writer sweeps)
 *   `<tag>:cl`  sorted set: the same members scored by the sequence number of their last change (the feed's order)
 *   `<tag>:cn`  the last sequence number
 *   `<tag>:ce`  this data set's epoch (a random id set by the first write): cursors carry it
 *
 * - `status` is one HMGET of the two fields a certificate can be revoked by: one round trip.
 * - Writes are one Lua script each: monotonic (the latest `atMs`, the latest `forgetAtMs`;
 *   an earlier time changes nothing) and they forget up to 500 moot entries each, so the
 *   hash does not grow with revocations nobody can present any more. Readers ignore an
 *   entry whose `forgetAtMs` has passed, swept or not. (Per-field expiry, HEXPIRE, needs
 *   Redis 7.4; the sorted set works on every supported version.)
 * - `page` is one ZRANGEBYSCORE over the change order after the cursor's sequence number:
 *   O(log n + limit), whatever the number of entries.
 */
import { randomUUID } from 'node:crypto'
import { StoreUnavailable } from '../errors.js'
import type { FailClosedConnection } from '../lib/redis.js'
import {
  assertEpochMs,
  assertSpiffeId,
  decideStatus,
  normalSerial,
  pageLimit,
  type CertificateRevocationEntry,
  type CertificateRevocationPage,
  type CertificateRevocationStore,
  type CertificateStatus,
  type CertificateStatusInput,
} from './certificates.js'

/** Moot entries one write forgets at most (bounds the script's run time). */
const SWEEP_PER_WRITE = 500

// KEYS: cr, cf, cl, cn, ce. ARGV: member ('s:<serial>' | 'i:<spiffe id>'), atMs ('' for a
// serial), forgetAtMs, nowMs, a new epoch id (used only when the data set has none).
const REVOKE_LUA = `
local now = tonumber(ARGV[4])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ${SWEEP_PER_WRITE})
for _, m in ipairs(old) do
  redis.call('HDEL', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZREM', KEYS[3], m)
end
redis.call('SET', KEYS[5], ARGV[5], 'NX')
local member = ARGV[1]
local forget = tonumber(ARGV[3])
local cur = redis.call('HGET', KEYS[1], member)
local value
if ARGV[2] == '' then
  local cf = tonumber(cur or '0') or 0
  if cf > now then
    if cf >= forget then return 0 end
  end
  value = string.format('%d', forget)
else
  local at = tonumber(ARGV[2])
  if cur then
    local sp = string.find(cur, ' ', 1, true)
    local ca = tonumber(string.sub(cur, 1, sp - 1))
    local cf = tonumber(string.sub(cur, sp + 1))
    if cf > now then
      if ca > at then at = ca end
      if cf > forget then forget = cf end
      if at == ca and forget == cf then return 0 end
    end
  end
  value = string.format('%d %d', at, forget)
end
redis.call('HSET', KEYS[1], member, value)
redis.call('ZADD', KEYS[2], forget, member)
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), member)
return 1
`

// KEYS: cr, cl, ce. ARGV: the cursor's epoch, its sequence number, limit. Returns
// {epoch, last sequence number read, more (0|1), member, value, member, value, ...}.
const PAGE_LUA = `
local epoch = redis.call('GET', KEYS[3])
if not epoch then return {'', '0', 0} end
local after = ARGV[2]
if ARGV[1] ~= epoch then after = '0' end
local limit = tonumber(ARGV[3])
local r = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. after, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local out = {epoch, after, 0}
local n = #r / 2
local take = n
if take > limit then
  take = limit
  out[3] = 1
end
for j = 1, take do
  local m = r[2 * j - 1]
  out[2] = r[2 * j]
  local v = redis.call('HGET', KEYS[1], m)
  if v then
    out[#out + 1] = m
    out[#out + 1] = v
  end
end
return out
`

const CMD_REVOKE = 'agentTrustCertRevokeV1'
const CMD_PAGE = 'agentTrustCertPageV1'
type ScriptFn = (...args: Array<string | number>) => Promise<unknown>

function malformed(): StoreUnavailable {
  return new StoreUnavailable('a certificate revocation in the store is malformed; the certificate was refused', {
    details: { rule: 'reply' },
  })
}

function parseSerialValue(v: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n)) throw malformed()
  return n
}

function parseIdentityValue(v: string): { atMs: number; forgetAtMs: number } {
  const [a, f, extra] = v.split(' ')
  const atMs = Number(a)
  const forgetAtMs = Number(f)
  if (extra !== undefined || !Number.isSafeInteger(atMs) || !Number.isSafeInteger(forgetAtMs)) throw malformed()
  return { atMs, forgetAtMs }
}

/** Sends one defined script with its arguments (keys first) and resolves with its reply. */
export type RevocationWrite = (cmd: string, args: ReadonlyArray<string | number>) => Promise<unknown>

export class RedisCertificateRevocationStore implements CertificateRevocationStore {
  readonly #conn: FailClosedConnection
  readonly #write: RevocationWrite
  readonly #keys: { readonly cr: string; readonly cf: string; readonly cl: string; readonly cn: string; readonly ce: string }

  /**
   * `tag` is the store's shard-0 hash tag; the connection stays the store's. `write` sends a
   * revocation script (the replay/revocation store's, so that its replica acknowledgement
   * applies); by default it runs on the connection directly.
   */
  constructor(conn: FailClosedConnection, tag: string, write?: RevocationWrite) {
    this.#conn = conn
    this.#write = write ?? ((cmd, args) => conn.run((c) => (c as unknown as Record<string, ScriptFn>)[cmd]!(...args)))
    this.#keys = { cr: `${tag}:cr`, cf: `${tag}:cf`, cl: `${tag}:cl`, cn: `${tag}:cn`, ce: `${tag}:ce` }
    conn.client.defineCommand(CMD_REVOKE, { lua: REVOKE_LUA, numberOfKeys: 5 })
    conn.client.defineCommand(CMD_PAGE, { lua: PAGE_LUA, numberOfKeys: 3 })
  }

  async revokeSerial(serialNumber: string, forgetAtMs: number): Promise<void> {
    const s = normalSerial(serialNumber)
    assertEpochMs(forgetAtMs, 'forgetAtMs')
    await this.#revoke(`s:${s}`, '', forgetAtMs)
  }

  async revokeIdentity(spiffeId: string, atMs: number, forgetAtMs: number): Promise<void> {
    assertSpiffeId(spiffeId)
    assertEpochMs(atMs, 'atMs')
    assertEpochMs(forgetAtMs, 'forgetAtMs')
    await this.#revoke(`i:${spiffeId}`, String(atMs), forgetAtMs)
  }

  async status(c: CertificateStatusInput, nowMs: number = Date.now()): Promise<CertificateStatus> {
    const serial = String(c.serialNumber).toLowerCase()
    const [s, i] = await this.#conn.run((r) => r.hmget(this.#keys.cr, `s:${serial}`, `i:${c.spiffeId}`))
    return decideStatus(
      c,
      s === null || s === undefined ? undefined : parseSerialValue(s),
      i === null || i === undefined ? undefined : parseIdentityValue(i),
      nowMs,
    )
  }

  async page(options: { cursor?: string; limit?: number } = {}, nowMs: number = Date.now()): Promise<CertificateRevocationPage> {
    const limit = pageLimit(options.limit)
    let epoch = ''
    let after = '0'
    const cursor = options.cursor ?? ''
    const dot = cursor.lastIndexOf('.')
    if (dot > 0 && /^\d{1,16}$/.test(cursor.slice(dot + 1))) {
      epoch = cursor.slice(0, dot)
      after = cursor.slice(dot + 1)
    }
    const k = this.#keys
    const r = await this.#conn.run((c) => (c as unknown as Record<string, ScriptFn>)[CMD_PAGE]!(k.cr, k.cl, k.ce, epoch, after, limit))
    if (!Array.isArray(r) || r.length < 3 || r.length % 2 === 0) throw malformed()
    const [e, last, more] = r as [string, string, number]
    const entries: CertificateRevocationEntry[] = []
    for (let j = 3; j + 1 < r.length; j += 2) {
      const m = String(r[j])
      const v = String(r[j + 1])
      if (m.startsWith('s:')) {
        const forgetAtMs = parseSerialValue(v)
        if (forgetAtMs > nowMs) entries.push({ kind: 'certificate', serialNumber: m.slice(2), forgetAtMs })
      } else if (m.startsWith('i:')) {
        const { atMs, forgetAtMs } = parseIdentityValue(v)
        if (forgetAtMs > nowMs) entries.push({ kind: 'identity', spiffeId: m.slice(2), atMs, forgetAtMs })
      } else {
        throw malformed()
      }
    }
    return { entries, cursor: e === '' ? '' : `${e}.${String(last)}`, more: more === 1 }
  }

  /** The connection belongs to the replay/revocation store: closing that closes this. */
  async close(): Promise<void> {}

  async #revoke(member: string, atMs: string, forgetAtMs: number): Promise<void> {
    const k = this.#keys
    await this.#write(CMD_REVOKE, [k.cr, k.cf, k.cl, k.cn, k.ce, member, atMs, forgetAtMs, Date.now(), randomUUID()])
  }
}
