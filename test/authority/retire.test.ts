/**
 * Retirement of spawned agents: a parent (or ancestor) retires a child whose task is done;
 * the child and every agent it spawned lose every token, their ids stay taken, and the
 * parent's child slot is free again. Attacked: retiring what one does not own, retiring a
 * manifest agent, retiring twice (or concurrently) to free more slots than were taken; and,
 * across authority processes on one Redis, a retirement on one replica holds on the other and
 * after a restart.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Redis } from 'ioredis'
import fc from 'fast-check'
import { Authority, createVerifier, MemoryAuditLog, MemoryReplayRevocationStore, type ReplayRevocationStore } from 'agent-trust'
import { createRedisStore } from 'agent-trust/revocation/redis'
import { killAuthorityProcesses, startAuthorityProcess } from '../support/authority-process.js'
import { MANIFEST, readMintFor, READ_REQUIREMENT } from '../support/kernel.js'
import { REDIS_URL } from '../support/redis.js'

const ORCH = 'moltbot-orchestrator'
const READ = READ_REQUIREMENT
const child = (id: string, trustLevel: 'L2' | 'L3' = 'L2') => ({
  id,
  trustLevel,
  grants: ['db:read:documents:namespace:user-123'],
  maxDelegationDepth: trustLevel === 'L3' ? 1 : 0,
})
const mintFor = readMintFor

const PREFIX = `at-test-retire-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
afterAll(() => killAuthorityProcesses())

async function kernel(store: ReplayRevocationStore, maxChildrenPerParent = 3) {
  const audit = new MemoryAuditLog()
  const authority = await Authority.create({ manifest: MANIFEST, store, audit, maxChildrenPerParent })
  const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store })
  return { authority, verifier, audit }
}

const stores: Array<[string, () => ReplayRevocationStore]> = [
  ['memory store', () => new MemoryReplayRevocationStore()],
  ['Redis store', () => createRedisStore({ url: REDIS_URL, prefix: `${PREFIX}-${Math.random().toString(36).slice(2, 8)}` })],
]

describe.each(stores)('retiring spawned agents (%s)', (_name, makeStore) => {
  it('retires the child and its descendants: tokens refused, ids taken, the slot free again', async () => {
    const store = makeStore()
    try {
      const { authority, verifier, audit } = await kernel(store, 2)
      await authority.spawn({ parent: ORCH, child: child('worker', 'L3') })
      await authority.spawn({ parent: 'worker', child: child('worker.helper') })
      await authority.spawn({ parent: ORCH, child: child('other') })
      await expect(authority.spawn({ parent: ORCH, child: child('third') })).rejects.toMatchObject({
        code: 'ERR_SPAWN_DENIED',
        details: { rule: 'maxChildrenPerParent' },
      })
      const tokens = [await authority.mint(mintFor('worker')), await authority.mint(mintFor('worker.helper'))]
      const kept = await authority.mint(mintFor('other'))

      expect(await authority.retire({ parent: ORCH, agentId: 'worker' })).toEqual(['worker', 'worker.helper'])

      for (const t of tokens) await expect(verifier.verify(t, READ)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
      await expect(verifier.verify(kept, READ)).resolves.toBeDefined()
      for (const id of ['worker', 'worker.helper'])
        await expect(authority.mint(mintFor(id))).rejects.toMatchObject({ code: 'ERR_AGENT_UNKNOWN' })
      // The ids stay taken (a new agent under an old id would inherit its audit history).
      await expect(authority.spawn({ parent: ORCH, child: child('worker') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
      await expect(authority.spawn({ parent: ORCH, child: child('worker.helper') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
      // One slot was freed, not two (the grandchild was not the orchestrator's).
      await authority.spawn({ parent: ORCH, child: child('third') })
      await expect(authority.spawn({ parent: ORCH, child: child('fourth') })).rejects.toMatchObject({
        details: { rule: 'maxChildrenPerParent' },
      })
      expect(audit.events.filter((e) => e.action === 'revoke').map((e) => [e.origin, e.destination, e.note])).toEqual([
        [ORCH, 'worker', 'retired'],
        [ORCH, 'worker.helper', 'retired with worker'],
      ])
    } finally {
      await store.close()
    }
  })

  it('refuses a retirement by anyone but an ancestor, and of a manifest agent', async () => {
    const store = makeStore()
    try {
      const { authority, audit } = await kernel(store)
      await authority.spawn({ parent: ORCH, child: child('a', 'L3') })
      await authority.spawn({ parent: 'a', child: child('a.kid') })
      await authority.spawn({ parent: ORCH, child: child('b', 'L3') })
      const attempts: Array<[string, string, string]> = [
        ['b', 'a', 'retire-ancestor'], // a sibling
        ['b', 'a.kid', 'retire-ancestor'], // a cousin
        ['a.kid', 'a', 'retire-ancestor'], // a child retiring its parent
        ['a', 'a', 'retire-ancestor'], // itself
        ['agent-summarizer-v2', 'a', 'retire-ancestor'], // an unrelated manifest agent
        [ORCH, 'agent-summarizer-v2', 'retire-manifest-agent'],
        [ORCH, ORCH, 'retire-manifest-agent'],
      ]
      for (const [parent, agentId, rule] of attempts)
        await expect(authority.retire({ parent, agentId })).rejects.toMatchObject({ details: { rule } })
      await expect(authority.retire({ parent: ORCH, agentId: 'nobody' })).rejects.toMatchObject({ code: 'ERR_AGENT_UNKNOWN' })
      await expect(authority.retire(null as never)).rejects.toMatchObject({ code: 'ERR_REQUEST_INVALID' })
      await expect(authority.retire({ parent: ORCH, agentId: 7 } as never)).rejects.toMatchObject({ code: 'ERR_REQUEST_INVALID' })
      // Every refusal the kernel decided is audited (a call without a request object is a programming error), and nothing was retired: the grandparent still can.
      expect(audit.events.filter((e) => e.action === 'revoke' && e.decision === 'deny')).toHaveLength(attempts.length + 2)
      expect(await authority.retire({ parent: ORCH, agentId: 'a.kid' })).toEqual(['a.kid'])
      await authority.mint(mintFor('a'))
    } finally {
      await store.close()
    }
  })

  it('concurrent and repeated retirements free one slot only (property)', async () => {
    const store = makeStore()
    try {
      const { authority } = await kernel(store, 2)
      let n = 0
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 2, max: 12 }), async (racers) => {
          const id = `racer-${n++}`
          await authority.spawn({ parent: ORCH, child: child(id) })
          const filler = `filler-${n++}`
          await authority.spawn({ parent: ORCH, child: child(filler) })
          const results = await Promise.allSettled(Array.from({ length: racers }, () => authority.retire({ parent: ORCH, agentId: id })))
          const retired = results.filter((r) => r.status === 'fulfilled' && r.value.length > 0)
          expect(retired).toHaveLength(1)
          // The parent holds the filler: exactly one slot is free.
          const probe = `probe-${n++}`
          await authority.spawn({ parent: ORCH, child: child(probe) })
          await expect(authority.spawn({ parent: ORCH, child: child(`over-${n++}`) })).rejects.toMatchObject({
            details: { rule: 'maxChildrenPerParent' },
          })
          await authority.retire({ parent: ORCH, agentId: filler })
          await authority.retire({ parent: ORCH, agentId: probe })
        }),
        { numRuns: 15 },
      )
    } finally {
      await store.close()
    }
  })
})

describe('retirement across authority processes (one Redis)', () => {
  it('retired on B: refused on A at once, old tokens refused, forgotten after a restart, slot freed everywhere', async () => {
    const prefix = `${PREFIX}-procs`
    const a = startAuthorityProcess(prefix, { maxChildrenPerParent: 1 })
    const { jwks, issuer } = await a.ready
    const b = startAuthorityProcess(prefix, { maxChildrenPerParent: 1 })
    await b.ready
    const store = createRedisStore({ url: REDIS_URL, prefix: `${prefix}-rev` })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer, jwks: () => jwks }], store })
    try {
      await a.call('spawn', { parent: ORCH, child: child('task-1', 'L3') })
      await a.call('spawn', { parent: 'task-1', child: child('task-1.sub') })
      const old = [(await a.call('mint', mintFor('task-1'))) as string, (await a.call('mint', mintFor('task-1.sub'))) as string]
      // B spawned nothing and retires what A spawned (the store knows the lineage).
      expect(await b.call('retire', { parent: ORCH, agentId: 'task-1' })).toEqual(['task-1', 'task-1.sub'])
      for (const t of old) await expect(verifier.verify(t, READ)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
      // A still has both in memory: its next mint reads the quarantine from the store.
      for (const id of ['task-1', 'task-1.sub'])
        await expect(a.call('mint', mintFor(id))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
      await expect(a.call('retire', { parent: ORCH, agentId: 'task-1' })).resolves.toEqual([])
      // The cap of one child is free again, on either replica.
      await a.call('spawn', { parent: ORCH, child: child('task-2') })
      await expect(b.call('spawn', { parent: ORCH, child: child('task-3') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
      // A restart knows task-2 only, and the retired ids stay taken.
      a.proc.kill('SIGKILL')
      const c = startAuthorityProcess(prefix, { maxChildrenPerParent: 1 })
      await c.ready
      await c.call('mint', mintFor('task-2'))
      await expect(c.call('mint', mintFor('task-1'))).rejects.toMatchObject({ code: 'ERR_AGENT_UNKNOWN' })
      await c.call('retire', { parent: ORCH, agentId: 'task-2' })
      await expect(c.call('spawn', { parent: ORCH, child: child('task-1') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
      await c.call('spawn', { parent: ORCH, child: child('task-4') })
      const records = await store.spawnedAgents()
      expect(records.map((r) => r.id)).toEqual(['task-4'])
    } finally {
      await store.close()
      a.proc.kill('SIGKILL')
      b.proc.kill('SIGKILL')
    }
  }, 60_000)
})

describe('idle retirement (memory store, the clock moved by the test)', () => {
  let offsetMs = 0
  const realNow = Date.now.bind(Date)
  beforeEach(() => {
    offsetMs = 0
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offsetMs)
  })
  afterEach(() => {
    vi.restoreAllMocks()
  })
  const later = (seconds: number) => {
    offsetMs += seconds * 1000
  }
  const idleKernel = async (options: { max?: number; idle?: number | false } = {}) => {
    const audit = new MemoryAuditLog()
    const store = new MemoryReplayRevocationStore({ now: () => Date.now() })
    const authority = await Authority.create({
      manifest: MANIFEST,
      store,
      audit,
      maxChildrenPerParent: options.max ?? 3,
      retireIdleChildrenAfterSeconds: options.idle ?? 360,
    })
    return { authority, audit, store }
  }

  it('a child idle longer than the idle time is retired when it next asks; activity keeps it', async () => {
    const { authority, audit } = await idleKernel({ max: 1 })
    await authority.spawn({ parent: ORCH, child: child('worker') })
    for (let i = 0; i < 5; i++) {
      later(200)
      await authority.mint(mintFor('worker'))
    }
    later(361)
    await expect(authority.mint(mintFor('worker'))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED', details: { rule: 'idle' } })
    expect(audit.events.filter((e) => e.note === 'retired idle').map((e) => e.destination)).toEqual(['worker'])
    // Its slot is free, its id taken.
    await authority.spawn({ parent: ORCH, child: child('worker-2') })
    await expect(authority.spawn({ parent: ORCH, child: child('worker') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
  })

  it('a descendant at work keeps its spawned ancestors alive; the idle sibling goes', async () => {
    const { authority } = await idleKernel()
    await authority.spawn({ parent: ORCH, child: child('lead', 'L3') })
    await authority.spawn({ parent: 'lead', child: child('lead.worker') })
    await authority.spawn({ parent: ORCH, child: child('sleeper') })
    for (let i = 0; i < 4; i++) {
      later(200)
      await authority.mint(mintFor('lead.worker'))
    }
    expect(await authority.retireIdleChildren()).toEqual(['sleeper'])
    await authority.mint(mintFor('lead'))
    await expect(authority.mint(mintFor('sleeper'))).rejects.toMatchObject({ code: 'ERR_AGENT_UNKNOWN' })
    // Idle as a whole: the sweep retires the lineage, parent first.
    later(400)
    expect(await authority.retireIdleChildren()).toEqual(['lead', 'lead.worker'])
  })

  it('a parent at its cap spawns again by retiring its idle children only', async () => {
    const { authority, audit } = await idleKernel({ max: 2 })
    await authority.spawn({ parent: ORCH, child: child('old') })
    later(300)
    await authority.spawn({ parent: ORCH, child: child('busy') })
    later(100)
    // "old" is idle (400 s), "busy" is not (100 s).
    await authority.spawn({ parent: ORCH, child: child('new') })
    expect(audit.events.filter((e) => e.note === 'retired idle').map((e) => e.destination)).toEqual(['old'])
    await expect(authority.spawn({ parent: ORCH, child: child('one-more') })).rejects.toMatchObject({
      details: { rule: 'maxChildrenPerParent' },
    })
    await authority.mint(mintFor('busy'))
  })

  it('off with false; out-of-range values refused at creation', async () => {
    const { authority } = await idleKernel({ idle: false })
    await authority.spawn({ parent: ORCH, child: child('forever') })
    later(30 * 24 * 3600)
    expect(await authority.retireIdleChildren()).toEqual([])
    await authority.mint(mintFor('forever'))
    for (const bad of [0, 359, 360.5, 30 * 24 * 3600 + 1, '3600', true, null])
      await expect(Authority.create({ manifest: MANIFEST, retireIdleChildrenAfterSeconds: bad as never })).rejects.toMatchObject({
        code: 'ERR_CONFIG_INVALID',
        details: { rule: 'retireIdleChildrenAfterSeconds' },
      })
  })
})

describe('idle retirement on Redis (expiry of the activity key made by the test)', () => {
  it('the sweep, a touch and a full parent each retire an idle child on every replica', async () => {
    const prefix = `${PREFIX}-idle`
    const redis = new Redis(REDIS_URL)
    const storeA = createRedisStore({ url: REDIS_URL, prefix })
    const storeB = createRedisStore({ url: REDIS_URL, prefix })
    try {
      const a = await Authority.create({ manifest: MANIFEST, store: storeA, maxChildrenPerParent: 2, retireIdleChildrenAfterSeconds: 600 })
      const b = await Authority.create({ manifest: MANIFEST, store: storeB, maxChildrenPerParent: 2, retireIdleChildrenAfterSeconds: 600 })
      const verifier = createVerifier({ id: 'agent-database-reader', issuers: [a.trustedIssuer()], store: storeB })
      // The activity key lives the idle time (the server expires it); the test expires it early.
      const idleNow = (id: string) => redis.del(`{${prefix}:0}:seen:${id}`)
      expect(await redis.pttl(`{${prefix}:0}:seen:`.concat('x'))).toBe(-2)
      await a.spawn({ parent: ORCH, child: child('swept') })
      expect(await redis.pttl(`{${prefix}:0}:seen:swept`)).toBeGreaterThan(590_000)
      const token = await a.mint(mintFor('swept'))
      await idleNow('swept')
      expect(await b.retireIdleChildren()).toEqual(['swept'])
      await expect(verifier.verify(token, READ)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
      await expect(a.mint(mintFor('swept'))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })

      // B never touched it (its first mint touches): found idle, retired.
      await a.spawn({ parent: ORCH, child: child('touched') })
      await idleNow('touched')
      await expect(b.mint(mintFor('touched'))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED', details: { rule: 'idle' } })

      // At its cap, the parent's idle child makes room; the active one stays.
      await a.spawn({ parent: ORCH, child: child('c1') })
      await a.spawn({ parent: ORCH, child: child('c2') })
      await idleNow('c1')
      await b.spawn({ parent: ORCH, child: child('c3') })
      await expect(a.mint(mintFor('c1'))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
      await a.mint(mintFor('c2'))
      expect((await storeA.spawnedAgents()).map((r) => r.id).sort()).toEqual(['c2', 'c3'])
      a.close()
      b.close()
    } finally {
      redis.disconnect()
      await storeA.close()
      await storeB.close()
    }
  })
})
