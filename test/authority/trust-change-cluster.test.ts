/**
 * Trust changes and lineage on a real Redis Cluster (3 masters + 3 replicas started by the
 * test on free ports, one Cluster for the file), with every key of the deployment in one slot
 * (`shards: 1`) and with markers spread over 16 slots (`shards: 16`). Two authority processes
 * on their own Cluster clients: a lowering approved on A is in force at B's next mint (B never
 * synced), the token minted before it is refused by a verifier, and a child spawned on A is
 * refused everywhere, old and new tokens, once B quarantines its parent. Every script runs on
 * the master of its declared key's slot and finds every key it derives there: a script that
 * touched another slot would fail the call (CROSSSLOT, or a non-local key) and so the test.
 */
import { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, createVerifier, type TrustChangeRequest } from 'agent-trust'
import { createRedisStore, shardTag, type RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { RedisTrustChangeStore } from '../../src/authority/trust-changes-redis.js'
import { killAuthorityProcesses, startAuthorityProcess, type AuthorityProcess } from '../support/authority-process.js'
import { decodePayload, MANIFEST, readMintFor, READ_REQUIREMENT } from '../support/kernel.js'
import { CI, killAll, randomPrefix, redisServerAvailable, startCluster, type RedisClusterProcesses } from '../support/redis.js'

const available = redisServerAvailable()
const PREFIX = randomPrefix('tccl')
const READ = READ_REQUIREMENT
const mintFor = readMintFor
const CHILD = (id: string) => ({ id, trustLevel: 'L3' as const, grants: ['db:read:documents:namespace:user-123'], maxDelegationDepth: 0 })

describe.skipIf(!available && !CI)('trust changes and lineage on a Redis Cluster (3 masters + 3 replicas)', () => {
  let cluster: RedisClusterProcesses
  const closers: Array<() => Promise<void>> = []
  // Generous bounds: two authority processes, a verifier and six redis-servers share 2 cores.
  const TIMEOUT = 5000

  let admin: Cluster
  beforeAll(async () => {
    cluster = await startCluster(3, { replicas: 1 })
    admin = new Cluster([...cluster.nodes])
    closers.push(async () => void admin.disconnect())
    await new Promise((resolve) => admin.once('ready', resolve))
  }, 90_000)

  /** Every key under a deployment's revocation prefix, read from each master, with its slot and the master that owns it. */
  async function keysOf(prefix: string): Promise<Map<string, { slot: number; master: string }>> {
    const shardsInfo = (await admin.cluster('SHARDS')) as unknown[]
    const out = new Map<string, { slot: number; master: string }>()
    for (const node of admin.nodes('master')) {
      let cursor = '0'
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', `{${prefix}:*`, 'COUNT', 1000)
        for (const k of found) {
          const slot = Number(await admin.cluster('KEYSLOT', k))
          out.set(k, { slot, master: ownerOf(shardsInfo, slot) })
        }
        cursor = next
      } while (cursor !== '0')
    }
    return out
  }
  afterAll(async () => {
    killAuthorityProcesses()
    for (const c of closers) await c()
    await cluster?.stop()
    await killAll()
  })

  /** Two authority processes on the Cluster, and the test's own store (a third Cluster client) with a verifier. */
  async function deployment(
    name: string,
    shards: number,
  ): Promise<{
    a: AuthorityProcess
    b: AuthorityProcess
    store: RedisReplayRevocationStore
    verify: (t: string) => Promise<unknown>
    rev: string
  }> {
    const p = `${PREFIX}-${name}-${shards}`
    const opts = { nodes: cluster.nodes, shards, commandTimeoutMs: TIMEOUT }
    const a = startAuthorityProcess(p, opts)
    const b = startAuthorityProcess(p, opts)
    const [{ jwks, issuer }] = await Promise.all([a.ready, b.ready])
    const store = createRedisStore({ nodes: cluster.nodes, prefix: `${p}-rev`, shards, commandTimeoutMs: TIMEOUT })
    closers.push(() => store.close())
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer, jwks: () => jwks }], store, mode: 'enforce' })
    return { a, b, store, verify: (t) => verifier.verify(t, READ), rev: `${p}-rev` }
  }

  for (const shards of [1, 16]) {
    describe(`shards: ${shards}`, () => {
      it('a lowering approved on A is in force at B at once; the token minted before it is refused', async () => {
        const { a, b, store, verify, rev } = await deployment('lower', shards)
        const before = (await b.call('mint', mintFor('agent-summarizer-v2'))) as string
        expect(decodePayload(before).trust_level).toBe('L2')

        const req = (await a.call('requestTrustChange', {
          agentId: 'agent-summarizer-v2',
          level: 'L1',
          reason: 'incident',
          requestedBy: 'sec',
        })) as TrustChangeRequest
        const decided = (await a.call('decideTrustChange', req.id, { approved: true, approver: 'alice' })) as TrustChangeRequest
        expect(decided).toMatchObject({ status: 'approved', decisionSeq: 1 })

        // B never synced: its registry still says L2, yet its mint reads the level from the store.
        expect(await b.call('agent', 'agent-summarizer-v2')).toMatchObject({ level: 'L2' })
        const after = (await b.call('mint', mintFor('agent-summarizer-v2'))) as string
        expect(decodePayload(after).trust_level).toBe('L1')
        await expect(verify(before)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
        await expect(verify(after)).resolves.toBeDefined()

        // The decision is in the store, on the master of shard 0's slot, seen from a third client.
        const trust = new RedisTrustChangeStore(store)
        expect(await trust.get(req.id)).toMatchObject({ status: 'approved', decisionSeq: 1, to: 'L1' })
        expect((await trust.list('approved')).map((r) => r.id)).toEqual([req.id])
        // A second approval of the same request, from B, is refused by the store, not applied.
        await expect(b.call('decideTrustChange', req.id, { approved: true, approver: 'bob' })).rejects.toMatchObject({
          code: 'ERR_TRUST_CHANGE_DENIED',
        })
        // B picks the change up at its sync; a replica started now loads it.
        expect(await b.call('syncTrustChanges')).toEqual([req.id])
        expect(await b.call('agent', 'agent-summarizer-v2')).toMatchObject({ level: 'L1' })

        // The trust-change keys and the agent's revocation sit in shard 0's slot: the one slot
        // the mint's read-only script (levels, revocation times, TIME) runs in.
        const keys = await keysOf(rev)
        const tag0 = shardTag(rev, 0)
        const inShard0 = [`${tag0}:tc:r`, `${tag0}:tc:seq`, `${tag0}:tc:lv:agent-summarizer-v2`, `${tag0}:a:agent-summarizer-v2`]
        for (const k of inShard0) expect(keys.get(k)?.slot).toBe(keys.get(`${tag0}:tc:r`)?.slot)
      }, 60_000)

      it('spawn on A, quarantine the parent on B: child and grandchild refused everywhere, old and new tokens', async () => {
        const { a, b, verify, rev } = await deployment('lineage', shards)
        await a.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD('child-1') })
        // B never saw the spawn: it reads the child from the store, and refuses its id.
        const onB = (await b.call('mint', mintFor('child-1'))) as string
        await expect(b.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD('child-1') })).rejects.toMatchObject({
          code: 'ERR_SPAWN_DENIED',
        })
        // A grandchild B never loads: its tokens die through their ancestry (the `anc` claim).
        await a.call('spawn', { parent: 'child-1', child: { ...CHILD('grandchild-1'), trustLevel: 'L2' } })
        const old = (await a.call('mint', mintFor('child-1'))) as string
        const oldGrand = (await a.call('mint', mintFor('grandchild-1'))) as string
        await expect(verify((await a.call('mint', mintFor('grandchild-1'))) as string)).resolves.toBeDefined()

        const ids = (await b.call('revokeAgent', 'moltbot-orchestrator')) as string[]
        expect(ids).toEqual(['moltbot-orchestrator', 'child-1'])
        for (const t of [old, onB, oldGrand]) await expect(verify(t)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
        for (const r of [a, b]) {
          for (const id of ['child-1', 'grandchild-1'])
            await expect(r.call('mint', mintFor(id))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
          await expect(r.call('spawn', { parent: 'child-1', child: CHILD('grandchild-2') })).rejects.toMatchObject({
            code: 'ERR_SPAWN_DENIED',
          })
          await expect(r.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD('child-2') })).rejects.toMatchObject({
            code: 'ERR_SPAWN_DENIED',
          })
        }
        // A replica started after the quarantine knows both from the store and refuses them too.
        const c = startAuthorityProcess(`${PREFIX}-lineage-${shards}`, { nodes: cluster.nodes, shards, commandTimeoutMs: TIMEOUT })
        expect(await c.call('agent', 'grandchild-1')).toMatchObject({ declaration: { parent: 'child-1' } })
        await expect(c.call('mint', mintFor('grandchild-1'))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
        await expect(c.call('spawn', { parent: 'grandchild-1', child: CHILD('g-3') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })

        // The lineage hash and child counters in shard 0's slot; each quarantine written to
        // every shard's slot (with 16, on more than one master).
        const keys = await keysOf(rev)
        const tag0 = shardTag(rev, 0)
        expect(keys.get(`${tag0}:ch:child-1`)?.slot).toBe(keys.get(`${tag0}:ag`)?.slot)
        const masters = new Set<string>()
        for (let i = 0; i < shards; i++) {
          const k = keys.get(`${shardTag(rev, i)}:a:child-1`)
          expect(k).toBeDefined()
          masters.add(k?.master as string)
        }
        expect(masters.size > 1).toBe(shards > 1)
      }, 60_000)
    })
  }

  it('shards: 16: a quarantine of 1,200 descendants (3 revocation chunks per shard) reaches every master; their tokens are refused', async () => {
    // In this process (two Cluster clients): the batched revocation script, with many ids per
    // call, on each of the 16 shards' slots.
    const p = `${PREFIX}-wide-16-rev`
    const store = createRedisStore({ nodes: cluster.nodes, prefix: p, shards: 16, commandTimeoutMs: TIMEOUT })
    const other = createRedisStore({ nodes: cluster.nodes, prefix: p, shards: 16, commandTimeoutMs: TIMEOUT })
    closers.push(
      () => store.close(),
      () => other.close(),
    )
    const authority = await Authority.create({ manifest: MANIFEST, store, maxChildrenPerParent: 2000 })
    closers.push(async () => authority.close())
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store: other, mode: 'enforce' })
    for (let i = 0; i < 1200; i += 50)
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => authority.spawn({ parent: 'moltbot-orchestrator', child: CHILD(`w-${i + j}`) })),
      )
    const tokens = await Promise.all(['w-0', 'w-599', 'w-1199'].map((id) => authority.mint(mintFor(id))))
    const ids = await authority.revokeAgent('moltbot-orchestrator')
    expect(ids).toHaveLength(1201)
    for (const t of tokens) await expect(verifier.verify(t, READ)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    const keys = await keysOf(p)
    const masters = new Set<string>()
    for (let i = 0; i < 16; i++) {
      for (const id of ['w-0', 'w-1199']) expect(keys.get(`${shardTag(p, i)}:a:${id}`)).toBeDefined()
      masters.add(keys.get(`${shardTag(p, i)}:a:w-1199`)?.master as string)
    }
    expect(masters.size).toBeGreaterThan(1)
  }, 60_000)
})

/** The id of the master whose slot ranges (CLUSTER SHARDS, Redis 7) hold `slot`. */
function ownerOf(shards: unknown[], slot: number): string {
  for (const s of shards) {
    const flat = s as unknown[]
    const slots = flat[flat.indexOf('slots') + 1] as number[]
    for (let i = 0; i + 1 < slots.length; i += 2) {
      if (slot >= Number(slots[i]) && slot <= Number(slots[i + 1])) {
        const nodes = flat[flat.indexOf('nodes') + 1] as unknown[][]
        const master = nodes.find((n) => n[n.indexOf('role') + 1] === 'master')
        return String(master?.[master.indexOf('id') + 1])
      }
    }
  }
  return 'none'
}
