/**
 * The store connection's admission queue during a long outage: every call made while Redis
 * is unreachable waits at most its deadline and is then denied; once denied it must leave the
 * queue, so memory stays bounded by `maxQueued` however many calls the outage sees.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { FailClosedConnection } from '../../src/lib/redis.js'
import { freePort } from '../support/redis.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function heapAfterGc(): number {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

const opened: FailClosedConnection[] = []
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close()
})

/** A connection to a port nothing listens on: it never becomes ready. */
async function unreachable(maxQueued: number, timeoutMs: number): Promise<FailClosedConnection> {
  const port = await freePort()
  const c = new FailClosedConnection({ url: `redis://127.0.0.1:${port}`, maxQueued }, timeoutMs)
  opened.push(c)
  return c
}

const codeOf = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: { code?: string; details?: { rule?: string } }) => `${e.code}/${e.details?.rule}`,
  )

describe('FailClosedConnection during a long outage', () => {
  it('denies every call as not-ready and keeps no trace of the denied ones', async () => {
    const conn = await unreachable(1000, 10)
    const wave = () => Promise.all(Array.from({ length: 1000 }, () => codeOf(conn.run((r) => r.get('k')))))
    expect(new Set(await wave())).toEqual(new Set(['ERR_STORE_UNAVAILABLE/not-ready']))
    const before = heapAfterGc()
    for (let i = 0; i < 80; i++) await wave()
    const grown = heapAfterGc() - before
    // 80,000 denied calls: a waiter kept per call would hold tens of MB here.
    expect(grown).toBeLessThan(6 * 1024 * 1024)
    expect(conn.load).toEqual({ inFlight: 0, queued: 0 })
  }, 60_000)

  it('refuses calls past maxQueued at once and still denies the queued ones at their deadline', async () => {
    const conn = await unreachable(10, 50)
    const codes = await Promise.all(Array.from({ length: 25 }, () => codeOf(conn.run((r) => r.get('k')))))
    expect(codes.filter((c) => c === 'ERR_STORE_BUSY/queue-full')).toHaveLength(15)
    expect(codes.filter((c) => c === 'ERR_STORE_UNAVAILABLE/not-ready')).toHaveLength(10)
    expect(conn.load.queued).toBe(0)
  })
})
