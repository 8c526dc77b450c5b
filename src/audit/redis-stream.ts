/**
 * Audit sink on a Redis stream (XADD), for trails collected from many hosts.
 *
 * Subpath: `agent-trust/audit/redis` (needs the optional peer `ioredis`).
 *
 * Each batch is one MULTI/EXEC, so a retried batch is never half in the stream. Every
 * entry has the fields `chainId`, `seq` and `event` (the exact JSONL line, without its
 * newline), so `readAuditStream` + `verifyAuditTrail` check the stream like a file.
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

/** A {@link AuditSink} that appends each event to a Redis stream. */
export function createRedisStreamSink(
  options: RedisStreamSinkOptions = {},
): AuditSink & { readonly redis: Redis | Cluster; readonly key: string } {
  const { key = DEFAULT_AUDIT_STREAM_KEY, maxLen, commandTimeoutMs = 1000 } = options
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('the stream key must be a non-empty string')
  if (maxLen !== undefined && (!Number.isInteger(maxLen) || maxLen < 1)) throw new TypeError('maxLen must be a positive integer')
  if (!Number.isInteger(commandTimeoutMs) || commandTimeoutMs < 1) throw new TypeError('commandTimeoutMs must be a positive integer')
  const owned = options.redis === undefined
  let redis: Redis | Cluster
  if (options.redis !== undefined) {
    redis = options.redis
  } else {
    const url = options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
    // Fail fast rather than queue: the audit log keeps and retries the batch itself.
    const o: RedisOptions = { commandTimeout: commandTimeoutMs, enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false }
    redis = new Redis(url, o)
    // Without a listener ioredis reports connection errors on the console; the log counts them instead.
    redis.on('error', () => undefined)
  }
  return {
    name: `redis:${key}`,
    redis,
    key,
    async write(records) {
      await ready(redis, commandTimeoutMs)
      const m = redis.multi()
      for (const r of records) {
        const line = r.line.endsWith('\n') ? r.line.slice(0, -1) : r.line
        if (maxLen === undefined) m.xadd(key, '*', 'chainId', r.chainId, 'seq', String(r.seq), 'event', line)
        else m.xadd(key, 'MAXLEN', '~', String(maxLen), '*', 'chainId', r.chainId, 'seq', String(r.seq), 'event', line)
      }
      const results = await m.exec()
      if (results === null) throw new Error('the Redis transaction was aborted')
      for (const [err] of results) if (err) throw err
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
