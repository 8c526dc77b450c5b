/**
 * The Redis stream sink against a Redis that hangs: a private redis-server is stopped
 * (SIGSTOP) while batches are written, so calls time out on the client while the commands
 * wait in the server's socket buffer; the log retries them. After SIGCONT every queued copy
 * runs: the stream must still hold each event exactly once, and the chain must verify.
 */
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAuditLog, verifyAuditTrail } from 'agent-trust/audit'
import { auditStreamSeqKey, createRedisStreamSink, readAuditStream } from 'agent-trust/audit/redis'
import { CI, killAll, redisServerAvailable, startRedis, type RedisProcess } from '../support/redis.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// Skips only outside CI when Redis (or redis-server) is missing; with CI=true it runs and fails instead.
describe.skipIf(!redisServerAvailable() && !CI)('audit stream sink: Redis paused mid-write (SIGSTOP)', () => {
  let server: RedisProcess
  let raw: Redis
  beforeAll(async () => {
    server = await startRedis()
    raw = new Redis(server.url)
  }, 30_000)
  afterAll(async () => {
    raw?.disconnect()
    await killAll()
  })

  it('timed-out batches that still run after SIGCONT are not written twice; the chain verifies', async () => {
    const key = 'audit-stall'
    const errors: string[] = []
    const sink = createRedisStreamSink({ url: server.url, key, commandTimeoutMs: 150 })
    const log = createAuditLog({ sinks: [sink], flushIntervalMs: 10, batchSize: 32, onError: (e) => errors.push(e.message) })
    let n = 0
    const produce = async (ms: number): Promise<void> => {
      const end = Date.now() + ms
      while (Date.now() < end) {
        for (let i = 0; i < 5; i++) log.record({ action: 'tool_call', decision: 'allow', origin: 'agent-a', note: `event ${n++}` })
        await sleep(5)
      }
    }
    await produce(300)
    server.pause()
    try {
      // Batches are sent, time out on the client, and are retried (each retry queued too).
      await produce(1200)
    } finally {
      server.resume()
    }
    await produce(300)
    await log.close()

    expect(errors.some((m) => /timed? ?out/i.test(m))).toBe(true)
    expect(log.stats().sinks[0]!.failures).toBeGreaterThan(0)
    expect(log.stats().dropped).toBe(0)
    // Let any copy still queued on the connection run before reading.
    await raw.ping()
    const entries = (await raw.xrange(key, '-', '+')) as Array<[string, string[]]>
    const seqs = entries.map(([, f]) => Number(f[f.indexOf('seq') + 1]))
    expect(seqs).toEqual(Array.from({ length: n + 1 }, (_, i) => i))
    expect(await raw.hget(auditStreamSeqKey(key), log.chainId)).toBe(String(n))

    const report = await verifyAuditTrail(readAuditStream(raw, key), { requireSealed: true })
    expect(report.ok).toBe(true)
    expect(report.events).toBe(n + 1)
  }, 30_000)

  it('a retried batch that already ran writes nothing again; one that ran part way writes the rest', async () => {
    const key = 'audit-replay'
    const sink = createRedisStreamSink({ url: server.url, key })
    const captured: Array<Parameters<typeof sink.write>[0]> = []
    const spy = { ...sink, name: 'spy', write: async (r: Parameters<typeof sink.write>[0]) => void captured.push(r) }
    const log2 = createAuditLog({ sinks: [spy], chainId: 'replayed-chain', flushIntervalMs: 60_000 })
    for (let i = 0; i < 10; i++) log2.record({ action: 'mint', decision: 'allow', note: `${i}` })
    await log2.flush()
    const batch = captured.flat()
    expect(batch).toHaveLength(10)
    await sink.write(batch.slice(0, 4)) // a run that stopped part way
    await sink.write(batch) // the retry of the whole batch
    await sink.write(batch) // and a late copy
    const entries = (await raw.xrange(key, '-', '+')) as Array<[string, string[]]>
    expect(entries.map(([, f]) => f[f.indexOf('seq') + 1])).toEqual(batch.map((r) => String(r.seq)))
    expect((await verifyAuditTrail(readAuditStream(raw, key))).ok).toBe(true)
    await log2.close()
    await sink.close()
  })

  it('a Cluster client with a stream key without a hash tag is refused at creation (the marker must share its slot)', () => {
    const cluster = new Cluster([{ host: '127.0.0.1', port: server.port }], { lazyConnect: true })
    try {
      expect(() => createRedisStreamSink({ redis: cluster, key: 'agent-trust:audit' })).toThrow(/hash tag/)
      expect(() => createRedisStreamSink({ redis: cluster, key: '{}:audit' })).toThrow(/hash tag/)
      expect(createRedisStreamSink({ redis: cluster, key: '{agent-trust}:audit' }).key).toBe('{agent-trust}:audit')
    } finally {
      cluster.disconnect()
    }
  })

  it('works under the documented writer ACL (docs/stores.md); that user cannot delete or trim the trail', async () => {
    await raw.call(
      'ACL',
      'SETUSER',
      'at-audit-writer',
      'on',
      '>writer-secret',
      'resetkeys',
      '~agent-trust:audit',
      '~agent-trust:audit:seq',
      'resetchannels',
      '-@all',
      '+evalsha',
      '+eval',
      '+xadd',
      '+hget',
      '+hset',
      '+ping',
      '+info',
      '+@connection',
    )
    const u = new URL(server.url)
    u.username = 'at-audit-writer'
    u.password = 'writer-secret'
    const log = createAuditLog({ sinks: [createRedisStreamSink({ url: u.toString() })], batchSize: 8 })
    for (let i = 0; i < 20; i++) log.record({ action: 'spawn', decision: 'allow', note: `${i}` })
    await log.close()
    expect(log.stats().sinks[0]).toMatchObject({ written: 21, failures: 0 })
    expect((await verifyAuditTrail(readAuditStream(raw, 'agent-trust:audit'), { requireSealed: true })).ok).toBe(true)
    const writer = new Redis(u.toString())
    try {
      await expect(writer.del('agent-trust:audit')).rejects.toThrow(/NOPERM/)
      await expect(writer.xtrim('agent-trust:audit', 'MAXLEN', 0)).rejects.toThrow(/NOPERM/)
    } finally {
      writer.disconnect()
    }
  })
})
