/**
 * The Redis Streams sink against the real Redis at REDIS_URL. Each test uses its own random
 * key, deleted afterwards. Under CI=true an unreachable Redis fails the file instead of skipping.
 */
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CI, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'
import { createAuditLog, memorySink, verifyAuditLines, verifyAuditTrail } from 'agent-trust/audit'
import { createRedisStreamSink, readAuditStream } from 'agent-trust/audit/redis'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

const up = await sharedRedisUp()
const PREFIX = randomPrefix('audit')
const key = (name: string) => `${PREFIX}:${name}`

// Skips only outside CI when Redis (or redis-server) is missing; with CI=true it runs and fails instead.
describe.skipIf(!up && !CI)('audit sink: Redis Streams (real Redis)', () => {
  let raw: Redis
  beforeAll(() => {
    raw = new Redis(REDIS_URL)
  })
  afterAll(async () => {
    const keys = await raw.keys(`${PREFIX}:*`)
    if (keys.length > 0) await raw.del(...keys)
    raw.disconnect()
  })

  it('writes every event in order; the stream verifies like a file', async () => {
    const sink = createRedisStreamSink({ url: REDIS_URL, key: key('plain') })
    const mem = memorySink()
    const log = createAuditLog({ sinks: [sink, mem], batchSize: 64 })
    for (let i = 0; i < 500; i++)
      log.record({ action: 'tool_call', decision: i % 2 === 0 ? 'allow' : 'deny', origin: 'agent-a', note: `${i}` })
    await log.close()
    const lines: string[] = []
    for await (const l of readAuditStream(raw, key('plain'), { pageSize: 128 })) lines.push(l)
    expect(lines).toEqual(mem.lines)
    expect((await verifyAuditTrail(readAuditStream(raw, key('plain')), { requireSealed: true })).ok).toBe(true)
    const [first] = (await raw.xrange(key('plain'), '-', '+', 'COUNT', 1)) as Array<[string, string[]]>
    expect(first?.[1].slice(0, 4)).toEqual(['chainId', log.chainId, 'seq', '0'])
  })

  it('several writers share one stream, each with its own chain', async () => {
    const logs = [0, 1, 2].map(() =>
      createAuditLog({ sinks: [createRedisStreamSink({ url: REDIS_URL, key: key('shared') })], flushIntervalMs: 1, batchSize: 8 }),
    )
    for (let i = 0; i < 300; i++) {
      for (const l of logs) l.record({ action: 'mint', decision: 'allow', note: `${i}` })
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1))
    }
    await Promise.all(logs.map((l) => l.close()))
    const r = await verifyAuditTrail(readAuditStream(raw, key('shared')), { requireSealed: true })
    expect(r.ok).toBe(true)
    expect(r.chains).toHaveLength(3)
  })

  it('MAXLEN ~ trims the oldest events: verify with allowTrimmedStart', async () => {
    const log = createAuditLog({ sinks: [createRedisStreamSink({ url: REDIS_URL, key: key('trimmed'), maxLen: 100 })], batchSize: 50 })
    for (let i = 0; i < 2000; i++) {
      log.record({ action: 'egress', decision: 'deny', code: 'ERR_EGRESS_DENIED' })
      if (i % 100 === 99) await log.flush()
    }
    await log.close()
    const len = await raw.xlen(key('trimmed'))
    expect(len).toBeLessThan(2001)
    expect((await verifyAuditTrail(readAuditStream(raw, key('trimmed')))).firstBreak?.kind).toBe('deleted')
    expect((await verifyAuditTrail(readAuditStream(raw, key('trimmed')), { allowTrimmedStart: true, requireSealed: true })).ok).toBe(true)
  })

  it('an entry deleted from the stream (XDEL) is detected', async () => {
    const log = createAuditLog({ sinks: [createRedisStreamSink({ url: REDIS_URL, key: key('tampered') })] })
    for (let i = 0; i < 20; i++) log.record({ action: 'revoke', decision: 'allow', note: `${i}` })
    await log.close()
    const entries = (await raw.xrange(key('tampered'), '-', '+')) as Array<[string, string[]]>
    await raw.xdel(key('tampered'), (entries[7] as [string, string[]])[0])
    const r = await verifyAuditTrail(readAuditStream(raw, key('tampered')))
    expect(r.firstBreak).toMatchObject({ kind: 'deleted', seq: 7 })
  })

  it('Redis down: record() stays synchronous, batches are kept, failures counted, nothing crashes', async () => {
    // A port with nothing listening.
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port
        srv.close(() => resolve(p))
      })
    })
    const errors: string[] = []
    const sink = createRedisStreamSink({ url: `redis://127.0.0.1:${port}`, key: key('down'), commandTimeoutMs: 200 })
    const mem = memorySink()
    const log = createAuditLog({ sinks: [sink, mem], maxPendingEvents: 100, batchSize: 10, onError: (e) => errors.push(e.message) })
    for (let i = 0; i < 150; i++) {
      log.record({ action: 'tool_call', decision: 'allow' })
      if (i % 10 === 9) await new Promise((r) => setImmediate(r))
    }
    await log.flush()
    const s = log.stats().sinks.find((x) => x.name === `redis:${key('down')}`)
    expect(s?.failures).toBeGreaterThan(0)
    expect(s?.dropped).toBe(50)
    expect(errors.length).toBeGreaterThan(0)
    expect(verifyAuditLines(mem.lines).ok).toBe(true)
    sink.redis.disconnect()
    await log.close()
  })

  it('validates its options', async () => {
    const url = 'redis://user:redis-password-secret@127.0.0.1:1'
    await expectOptionMisuse(() => createRedisStreamSink({ redis: raw, key: '' }), { path: 'key' })
    await expectOptionMisuse(() => createRedisStreamSink({ redis: raw, maxLen: 0 }), { path: 'maxLen' })
    await expectOptionMisuse(() => createRedisStreamSink({ redis: {} as never }), { path: 'redis' })
    await expectOptionMisuse(() => createRedisStreamSink({ url, comandTimeoutMs: 5 } as never), {
      path: 'comandTimeoutMs',
      secrets: ['redis-password-secret'],
    })
    await expectOptionMisuse(() => createRedisStreamSink({ redis: raw, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
  })
})
