/**
 * Audit sink on a Redis stream (XADD), for trails collected from many hosts.
 *
 * Subpath: `agent-trust/audit/redis` (needs the optional peer `ioredis`).
 *
 * Each batch is one Lua script, run atomically by Redis, and idempotent: next to the stream
 * a hash `<key>:seq` holds, per chain, the last seq written, and the script skips every
 * entry at or below it. So a batch whose call timed out on this side but still ran on the
 * server (a stalled or paused Redis, a slow network) is not written twice by the retry, and
 * a retry after a partial run writes only the rest. Every entry has the fields `chainId`,
 * `seq` and `event` (the exact JSONL line, without its newline), so `readAuditStream` +
 * `verifyAuditTrail` check the stream like a file.
 *
 * On Redis Cluster both keys must live in one slot: give the stream key a hash tag
 * (`{agent-trust}:audit`, marker `{agent-trust}:audit:seq`). ACL for the writer's user:
 * `+evalsha +eval +xadd +hget +hset ~<key> ~<key>:seq` (the commands the script runs are
 * checked too); docs/stores.md has the full lines.
 * With `maxLen` the stream is trimmed (`MAXLEN ~`): the oldest events go, so verify with
 * `allowTrimmedStart: true`.
 *
 * @example
 * ```ts
 * import { createAuditLog, fileSink } from 'agent-trust/audit'
 * import { createRedisStreamSink } from 'agent-trust/audit/redis'
 * const audit = createAuditLog({ sinks: [fileSink('audit.jsonl'), createRedisStreamSink({ url: process.env.REDIS_URL })] })
 * ```
 *
 * @module agent-trust/audit/redis
 */
import { Redis, type Cluster, type RedisOptions } from 'ioredis'
import { z } from 'zod'
import { ConfigInvalid } from '../errors.js'
import { parseOptions, withMethods } from '../lib/options.js'
import type { AuditSink } from './sinks.js'

export interface RedisStreamSinkOptions {
  /** An ioredis client (standalone, Sentinel or Cluster). Not closed by the sink. */
  readonly redis?: Redis | Cluster
  /** Or a URL (`redis://...`); default `REDIS_URL`. The sink then owns (and closes) the client. */
  readonly url?: string
  /** Stream key. Default `agent-trust:audit`. */
  readonly key?: string
  /** Trim to about this many entries (`XADD MAXLEN ~`). Default: no trimming. */
  readonly maxLen?: number
  /** Per-command timeout, milliseconds, for a client the sink creates. Default 1000. */
  readonly commandTimeoutMs?: number
}

export const DEFAULT_AUDIT_STREAM_KEY = 'agent-trust:audit'

/** {@link RedisStreamSinkOptions}, checked once when the sink is built. */
const RedisStreamSinkOptionsSchema = z.strictObject({
  redis: withMethods<Redis | Cluster>('defineCommand', 'xadd').optional(),
  url: z.string().min(1).optional(),
  key: z.string().min(1).max(1024).optional(),
  maxLen: z.int().min(1).optional(),
  commandTimeoutMs: z.int().min(1).optional(),
})

// KEYS[1]: the stream, KEYS[2]: the marker hash (chainId -> last seq written).
// ARGV[1]: MAXLEN ('' for none); then chainId, seq, event per entry. Entries at or below the
// chain's marker were written by an earlier run of this batch: skipped. Returns the count written.
const APPEND_LUA = `
local last = {}
local written = 0
for i = 2, #ARGV, 3 do
  local chain = ARGV[i]
  local seq = tonumber(ARGV[i + 1])
  if last[chain] == nil then last[chain] = tonumber(redis.call('HGET', KEYS[2], chain) or '-1') end
  if seq > last[chain] then
    if ARGV[1] == '' then
      redis.call('XADD', KEYS[1], '*', 'chainId', chain, 'seq', ARGV[i + 1], 'event', ARGV[i + 2])
    else
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'chainId', chain, 'seq', ARGV[i + 1], 'event', ARGV[i + 2])
    end
    redis.call('HSET', KEYS[2], chain, ARGV[i + 1])
    last[chain] = seq
    written = written + 1
  end
end
return written
`
const CMD_APPEND = 'agentTrustAuditAppendV1'
type ScriptFn = (...args: string[]) => Promise<unknown>

/** The marker hash next to a stream key: the chains' last written seq. */
export function auditStreamSeqKey(key: string): string {
  return `${key}:seq`
}

function hasHashTag(key: string): boolean {
  // Redis Cluster hashes the part between the first '{' and the next '}', if not empty.
  const open = key.indexOf('{')
  return open >= 0 && key.indexOf('}', open + 1) > open + 1
}

/** A {@link AuditSink} that appends each event to a Redis stream. */
export function createRedisStreamSink(
  options: RedisStreamSinkOptions = {},
): AuditSink & { readonly redis: Redis | Cluster; readonly key: string } {
  const o = parseOptions('createRedisStreamSink', RedisStreamSinkOptionsSchema, options)
  const { key = DEFAULT_AUDIT_STREAM_KEY, maxLen, commandTimeoutMs = 1000 } = o
  const owned = options.redis === undefined
  let redis: Redis | Cluster
  if (o.redis !== undefined) {
    redis = o.redis
  } else {
    const url = o.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
    // Fail fast rather than queue: the audit log keeps and retries the batch itself.
    const ro: RedisOptions = { commandTimeout: commandTimeoutMs, enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false }
    redis = new Redis(url, ro)
    // Without a listener ioredis reports connection errors on the console; the log counts them instead.
    redis.on('error', () => undefined)
  }
  if ((redis as { isCluster?: boolean }).isCluster === true && !hasHashTag(key))
    throw new ConfigInvalid(
      'createRedisStreamSink: invalid options:\n  - key: on Redis Cluster the audit stream key needs a hash tag (e.g. "{agent-trust}:audit"): its seq marker must share the slot',
      { details: { rule: 'options', issues: 1, path: 'key' } },
    )
  const seqKey = auditStreamSeqKey(key)
  redis.defineCommand(CMD_APPEND, { lua: APPEND_LUA, numberOfKeys: 2 })
  const append = (redis as unknown as Record<string, ScriptFn>)[CMD_APPEND] as ScriptFn
  return {
    name: `redis:${key}`,
    redis,
    key,
    async write(records) {
      await ready(redis, commandTimeoutMs)
      const args: string[] = [key, seqKey, maxLen === undefined ? '' : String(maxLen)]
      for (const r of records) args.push(r.chainId, String(r.seq), r.line.endsWith('\n') ? r.line.slice(0, -1) : r.line)
      await append.apply(redis, args)
    },
    async close() {
      if (owned) await redis.quit().catch(() => redis.disconnect())
    },
  }
}

/** Without an offline queue a command sent while connecting fails: wait (bounded) for the connection. */
async function ready(redis: Redis | Cluster, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return
  if (redis.status === 'wait') void redis.connect().catch(() => undefined)
  if (redis.status === 'end' || redis.status === 'close') throw new Error('the Redis connection is closed')
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer)
      redis.off('ready', onReady)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onReady = (): void => done()
    const timer = setTimeout(() => done(new Error(`Redis not ready within ${timeoutMs} ms`)), timeoutMs)
    redis.once('ready', onReady)
  })
}

/**
 * The stream's events as lines, oldest first, paged with XRANGE: feed them to
 * `verifyAuditTrail` (with `allowTrimmedStart` when the stream is trimmed).
 */
export async function* readAuditStream(
  redis: Redis | Cluster,
  key: string = DEFAULT_AUDIT_STREAM_KEY,
  options: { pageSize?: number } = {},
): AsyncGenerator<string> {
  const { pageSize = 1000 } = options
  let start = '-'
  for (;;) {
    const page = (await redis.xrange(key, start, '+', 'COUNT', pageSize)) as Array<[string, string[]]>
    for (const [, fields] of page) {
      const i = fields.indexOf('event')
      yield i >= 0 && i % 2 === 0 ? (fields[i + 1] ?? '') : ''
    }
    if (page.length < pageSize) return
    start = `(${(page[page.length - 1] as [string, string[]])[0]}`
  }
}
