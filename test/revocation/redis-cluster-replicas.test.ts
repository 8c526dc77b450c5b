/**
 * Replica acknowledgement on Redis Cluster: 3 masters + 3 replicas started here. The store's
 * write and its `WAIT` go to the master owning the key's slot (a pipeline routed by its
 * keyed command): pausing that master's replica refuses writes, which a WAIT sent to any
 * other master would not. Then a failover of that master (killed, its replica promoted with
 * CLUSTER FAILOVER TAKEOVER): everything the store acknowledged is on the new master.
 */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRedisStore, shardTag, type RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { CI, killAll, redisServerAvailable, startCluster, type RedisClusterProcesses, storeCheck } from '../support/redis.js'

const available = redisServerAvailable()

const input = storeCheck

async function cli(port: number, ...args: Array<string | number>): Promise<unknown> {
  const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
  try {
    return await r.call(String(args[0]), ...args.slice(1).map(String))
  } finally {
    r.disconnect()
  }
}

async function until(check: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check().catch(() => false)) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** The master port serving `slot`, and the port of its replica, from CLUSTER NODES. */
async function ownerOf(anyPort: number, slot: number): Promise<{ master: number; replica: number }> {
  const lines = String(await cli(anyPort, 'CLUSTER', 'NODES'))
    .trim()
    .split('\n')
    .map((l) => l.split(' '))
  const port = (f: string[]): number => Number((f[1] as string).split('@')[0]!.split(':')[1])
  const master = lines.find(
    (f) =>
      (f[2] as string).includes('master') &&
      f.slice(8).some((r) => {
        const [a, b] = r.split('-').map(Number)
        return slot >= (a as number) && slot <= (b ?? a)!
      }),
  )
  if (master === undefined) throw new Error('no master for the slot')
  const replica = lines.find((f) => f[3] === master[0])
  if (replica === undefined) throw new Error('the master has no replica')
  return { master: port(master), replica: port(replica) }
}

describe.skipIf(!available && !CI)('Redis Cluster, 3 masters + 3 replicas, replica acknowledgement', () => {
  let cluster: RedisClusterProcesses
  const stores: RedisReplayRevocationStore[] = []
  const make = (acks: boolean): RedisReplayRevocationStore => {
    const s = createRedisStore({
      nodes: cluster.nodes,
      prefix: 'clacks',
      commandTimeoutMs: 3000,
      // Generous: on 2 cores shared with other test files a healthy replica can take longer
      // than 500 ms to acknowledge; the refusals below wait this long each.
      ...(acks ? { replicas: { acks: 1, timeoutMs: 2000 } } : {}),
    })
    stores.push(s)
    return s
  }

  beforeAll(async () => {
    cluster = await startCluster(3, { replicas: 1 })
    // Every replica synced with its master.
    for (const { port } of cluster.nodes)
      await until(async () => {
        const text = String(await cli(port, 'INFO', 'replication'))
        return text.includes('role:master')
          ? /slave0:[^\r\n]*state=online/.test(text)
          : /master_link_status:up/.test(text) && /master_sync_in_progress:0/.test(text)
      }, `node ${port} replication`)
  }, 60_000)
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()))
    await cluster?.stop()
    await killAll()
  })

  it('consume and revoke with acks; the owning master losing its replica refuses them; a failover keeps every acknowledged write', async () => {
    const store = make(true)
    const slot = Number(await cli(cluster.nodes[0]!.port, 'CLUSTER', 'KEYSLOT', shardTag('clacks', 0)))
    const { master, replica } = await ownerOf(cluster.nodes[0]!.port, slot)

    const accepted = Array.from({ length: 30 }, () => input())
    for (const c of accepted) expect(await store.check(c)).toBe('ok')
    for (const c of accepted.slice(0, 5)) expect(await store.check(c)).toBe('replayed')
    const revoked = Array.from({ length: 10 }, () => randomUUID())
    await Promise.all(revoked.map((j) => store.revokeToken(j, Date.now() + 60_000)))
    await store.revokeAgent('agent-cl', 2_000_000_000)

    // Connected before the pause: a Cluster client that starts while a seed node is stopped
    // waits on that node's slot table, which is not what this test is about.
    const unacked = make(false)
    expect(await unacked.check({ ...input(), consume: false })).toBe('ok')

    // The owning master's replica stops answering: its acknowledgement never comes.
    const rp = cluster.processes.get(replica)!
    rp.kill('SIGSTOP')
    try {
      const refused = input()
      await expect(store.check(refused)).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE', details: { rule: 'not-replicated' } })
      await expect(store.revokeToken('late', Date.now() + 60_000)).rejects.toMatchObject({ details: { rule: 'not-replicated' } })
      // Without the option the master alone answers.
      expect(await unacked.check(input())).toBe('ok')
    } finally {
      rp.kill('SIGCONT')
    }

    // Failover: the master dies, its replica takes over.
    const mp = cluster.processes.get(master)!
    mp.kill('SIGKILL')
    await cli(replica, 'CLUSTER', 'FAILOVER', 'TAKEOVER')
    await until(async () => String(await cli(replica, 'INFO', 'replication')).includes('role:master'), 'the replica to take over')

    const after = make(false)
    await until(async () => (await after.check({ ...input(), consume: false })) === 'ok', 'the store to reach the new master')
    for (const c of accepted) expect(await after.check(c)).toBe('replayed')
    for (const j of revoked) expect(await after.check(input({ jti: j }))).toBe('token-revoked')
    expect(await after.check(input({ agents: ['agent-cl'] }))).toBe('agent-revoked')
    // The new master has no replica left: with acks, writes are refused, not accepted unreplicated.
    const acked = make(true)
    await expect(acked.check(input())).rejects.toMatchObject({ details: { rule: 'not-replicated' } })
  }, 30_000)
})
