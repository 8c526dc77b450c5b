/**
 * The cost of the Redis store's replica acknowledgement (`replicas: { acks: 1 }`): a
 * consuming check with it, the same check without it, and the floor (one EVALSHA of the
 * check script on a raw ioredis client: one Redis round trip), at 1 and at 64 in flight,
 * interleaved batches, medians. The bench starts its own master and replica (redis-server
 * on free loopback ports) so that WAIT has a replica to wait for.
 */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { CHECK_SCRIPT, createRedisStore, failClosedRedisOptions, shardTag } from 'agent-trust/revocation/redis'
import { compare, inFlightMedians, row, type Row } from './lib.js'
import { killAll, redisServerAvailable, startRedis } from '../test/support/redis.js'

const IN_FLIGHT = 64
const BATCH = 2000
const BATCHES = 9

async function waitSynced(replicaUrl: string): Promise<void> {
  const r = new Redis(replicaUrl)
  try {
    for (let i = 0; i < 200; i++) {
      if (/master_link_status:up/.test(await r.info('replication'))) return
      await new Promise((res) => setTimeout(res, 50))
    }
    throw new Error('the bench replica did not sync')
  } finally {
    r.disconnect()
  }
}

export async function benchRedisAcks(): Promise<Row[]> {
  if (!redisServerAvailable()) {
    console.warn('bench redis acks: skipped, no redis-server on PATH')
    return []
  }
  // No delay before the first (diskless) sync of a replica: Redis waits 5 s by default.
  const master = await startRedis(['--repl-diskless-sync-delay', '0'])
  // The replica writes the master's snapshot to disk on sync: keep it out of the working directory.
  const dir = mkdtempSync(join(tmpdir(), 'at-bench-replica-'))
  const replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port), '--dir', dir])
  const prefix = `agent-trust-bench-acks-${process.pid}`
  // Generous bounds: a 200 ms stall on a loaded machine must not abort the run.
  const acked = createRedisStore({ url: master.url, prefix, commandTimeoutMs: 5000, replicas: { acks: 1, timeoutMs: 1000 } })
  const plain = createRedisStore({ url: master.url, prefix, commandTimeoutMs: 5000 })
  const raw = new Redis(master.url, failClosedRedisOptions(5000))
  raw.on('error', () => undefined)
  try {
    await waitSynced(replica.url)
    if (raw.status !== 'ready') await new Promise((r) => raw.once('ready', r))
    const sha = (await raw.script('LOAD', CHECK_SCRIPT)) as string
    const tag = shardTag(prefix, 0)
    const iat = Math.floor(Date.now() / 1000)
    const check = (store: typeof acked) => (): Promise<unknown> =>
      store.check({ jti: randomUUID(), chain: [], agents: ['agent-a'], iat, forgetAtMs: Date.now() + 300_000, consume: true })
    const withAcks = check(acked)
    const without = check(plain)
    const floor = (): Promise<unknown> => {
      const jti = randomUUID()
      return raw.evalsha(sha, 1, `${tag}:u:${jti}`, tag, '1', 300_000, iat, randomUUID(), 1, jti, 'agent-a')
    }
    const rows: Row[] = []
    rows.push(await compare('consuming check, acks 1, 1 in flight', withAcks, 'one Redis round trip (EVALSHA)', floor))
    rows.push(await compare('consuming check, no acks, 1 in flight', without, 'one Redis round trip (EVALSHA)', floor))
    rows.push(await compare('consuming check, acks 1 vs no acks, 1 in flight', withAcks, 'same check, no acks', without))
    const [a, p, f] = (await inFlightMedians([withAcks, without, floor], { batch: BATCH, batches: BATCHES, concurrency: IN_FLIGHT })) as [
      number,
      number,
      number,
    ]
    const floorName = `one Redis round trip, ${IN_FLIGHT} in flight`
    rows.push(
      row({ name: `consuming check, acks 1, ${IN_FLIGHT} in flight (µs per call)`, medianUs: a, floorName, floorUs: f, ratio: a / f }),
    )
    rows.push(
      row({ name: `consuming check, no acks, ${IN_FLIGHT} in flight (µs per call)`, medianUs: p, floorName, floorUs: f, ratio: p / f }),
    )
    rows.push(
      row({
        name: `consuming check, acks 1 vs no acks, ${IN_FLIGHT} in flight`,
        medianUs: a,
        floorName: 'same check, no acks',
        floorUs: p,
        ratio: a / p,
      }),
    )
    return rows
  } finally {
    raw.disconnect()
    await Promise.all([acked.close(), plain.close()])
    await killAll()
    rmSync(dir, { recursive: true, force: true })
  }
}
