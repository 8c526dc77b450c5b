/**
 * Trust changes in the shared Redis: the default store of an authority given a Redis store.
 * Replicas see one another's requests and decisions, decisions are ordered by the store's
 * counter (never a decider's clock), one requester's flood is refused past the cap while
 * others still file, and an authority killed mid-change loses nothing it acknowledged and
 * applies nothing it refused.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Authority, type TrustChangeRequest } from 'agent-trust'
import { createRedisStore } from 'agent-trust/revocation/redis'
import { RedisTrustChangeStore } from '../../src/authority/trust-changes-redis.js'
import { killAuthorityProcesses, startAuthorityProcess } from '../support/authority-process.js'
import { MANIFEST } from '../support/kernel.js'
import { CI, deleteKeys, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'

const up = await sharedRedisUp()
const PREFIX = randomPrefix('trust')
const stores: { close(): Promise<void> }[] = []
afterAll(async () => {
  killAuthorityProcesses()
  await Promise.all(stores.map((s) => s.close()))
  if (up) await deleteKeys(REDIS_URL, `{${PREFIX}*`)
})
const deny = (rule: string) => expect.objectContaining({ code: 'ERR_TRUST_CHANGE_DENIED', details: expect.objectContaining({ rule }) })

async function replica(prefix: string): Promise<{ authority: Authority; trust: RedisTrustChangeStore }> {
  const store = createRedisStore({ url: REDIS_URL, prefix, commandTimeoutMs: 2000 })
  stores.push(store)
  return { authority: await Authority.create({ manifest: MANIFEST, store }), trust: new RedisTrustChangeStore(store) }
}

describe.skipIf(!up && !CI)('trust changes in Redis', () => {
  it('is the default with a Redis store: a request on A is decided on B and applied on A at its next sync', async () => {
    const p = `${PREFIX}-default`
    const a = await replica(p)
    const b = await replica(p)
    const req = await a.authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L1', reason: 'r', requestedBy: 'ops' })
    expect((await b.trust.get(req.id))?.status).toBe('pending')
    await expect(b.authority.decideTrustChange(req.id, { approved: true, approver: 'ops' })).rejects.toThrow(deny('self-approval'))
    const decided = await b.authority.decideTrustChange(req.id, { approved: true, approver: 'alice' })
    expect(decided).toMatchObject({ status: 'approved', decisionSeq: 1 })
    await expect(a.authority.decideTrustChange(req.id, { approved: false, approver: 'bob' })).rejects.toThrow(deny('not-pending'))
    expect(await a.authority.syncTrustChanges()).toEqual([req.id])
    expect(a.authority.agent('agent-summarizer-v2')?.level).toBe('L1')
    // The approved level is in the store: a request made against the old level is stale.
    const old = await b.trust.get(req.id)
    await b.trust.add({ ...(old as TrustChangeRequest), id: 'stale-1', status: 'pending', requestedBy: 'carol', to: 'L3' })
    await expect(b.trust.decide('stale-1', { approved: true, decidedBy: 'dave', decidedAt: new Date().toISOString() })).rejects.toThrow(
      deny('stale'),
    )
    expect((await b.trust.get('stale-1'))?.status).toBe('pending')
  })

  it('raise then lower decided by deciders 10 s apart: the store order wins, after a restart too', async () => {
    const p = `${PREFIX}-order`
    const a = await replica(p)
    const b = await replica(p)
    const raise = await a.authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L3', reason: 'r', requestedBy: 'ops' })
    await a.trust.decide(raise.id, { approved: true, decidedBy: 'alice', decidedAt: new Date(Date.now() + 10_000).toISOString() })
    await b.authority.syncTrustChanges()
    const lower = await b.authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L0', reason: 'r', requestedBy: 'sec' })
    // The second decider's clock is 20 s behind the first: its decidedAt sorts first.
    const decided = await b.trust.decide(lower.id, {
      approved: true,
      decidedBy: 'bob',
      decidedAt: new Date(Date.now() - 10_000).toISOString(),
    })
    expect(decided.decisionSeq).toBe(2)
    await a.authority.syncTrustChanges()
    await b.authority.syncTrustChanges()
    expect(a.authority.agent('agent-summarizer-v2')?.level).toBe('L0')
    expect(b.authority.agent('agent-summarizer-v2')?.level).toBe('L0')
    const restarted = await replica(p)
    expect(restarted.authority.agent('agent-summarizer-v2')?.level).toBe('L0')
  })

  it('100k requests from one requester are refused past the cap before anything is written; others still file', async () => {
    const p = `${PREFIX}-flood`
    const { authority, trust } = await replica(p)
    const agents = ['agent-summarizer-v2', 'agent-untrusted', 'agent-database-reader', 'agent-other-server']
    const rules = new Map<string, number>()
    let accepted = 0
    let next = 0
    const others: Promise<TrustChangeRequest>[] = []
    const worker = async (): Promise<void> => {
      for (let i = next++; i < 100_000; i = next++) {
        if (i % 25_000 === 0)
          others.push(
            authority.requestTrustChange({
              agentId: agents[(i / 25_000) % 4] as string,
              level: 'L1',
              reason: 'ops',
              requestedBy: `op-${i}`,
            }),
          )
        try {
          await authority.requestTrustChange({
            agentId: agents[i % agents.length] as string,
            level: 'L1',
            reason: `flood ${i}`,
            requestedBy: 'flooder',
          })
          accepted++
        } catch (e) {
          const rule = (e as { details?: { rule?: string } }).details?.rule ?? String((e as { code?: string }).code)
          rules.set(rule, (rules.get(rule) ?? 0) + 1)
        }
      }
    }
    await Promise.all(Array.from({ length: 64 }, worker))
    expect(accepted).toBe(agents.length)
    expect(rules.get('duplicate-pending')).toBe(100_000 - agents.length)
    expect(await Promise.all(others)).toHaveLength(4)
    for (const o of await Promise.all(others)) expect(o.status).toBe('pending')
    expect((await trust.list()).length).toBe(agents.length + 4)
  }, 120_000)

  it('an authority killed mid-change: every acknowledged decision is kept, no refused one is applied', async () => {
    const p = `${PREFIX}-kill`
    const { trust } = await replica(`${p}-rev`)
    const ids: string[] = []
    for (let i = 0; i < 40; i++) {
      const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`
      await trust.add({
        id,
        agentId: 'agent-summarizer-v2',
        from: 'L2',
        to: i % 2 === 0 ? 'L1' : 'L0',
        reason: 'r',
        requestedBy: `req-${i}`,
        createdAt: new Date().toISOString(),
        status: 'pending',
      })
      ids.push(id)
    }
    const proc = startAuthorityProcess(p)
    await proc.ready
    // Every decision at once (some self-approvals, every approval after the first is stale); killed after the first answers.
    const sent = ids.map((id, i) =>
      proc.send('decideTrustChange', id, { approved: i % 3 !== 1, approver: i % 5 === 0 ? `req-${i}` : 'alice' }),
    )
    await new Promise<void>((resolve) => {
      const t = setInterval(() => proc.answers.size >= 3 && (clearInterval(t), resolve()), 1)
    })
    await proc.kill()
    const replies = new Map(
      sent.flatMap((n, i) => {
        const m = proc.answers.get(n)
        return m === undefined ? [] : [[i, m as { ok: boolean; value?: TrustChangeRequest }] as const]
      }),
    )
    const after = new Map((await trust.list()).map((r) => [r.id, r]))
    for (const [i, m] of replies) {
      const stored = after.get(ids[i] as string)
      if (m.ok) expect(stored).toMatchObject({ status: m.value?.status, decisionSeq: m.value?.decisionSeq })
      else expect(stored?.status).toBe('pending')
    }
    const approved = [...after.values()].filter((r) => r.status === 'approved')
    expect(approved.length).toBeLessThanOrEqual(1)
    const restarted = await replica(`${p}-rev`)
    expect(restarted.authority.agent('agent-summarizer-v2')?.level).toBe(approved[0]?.to ?? 'L2')
  }, 60_000)
})

describe.skipIf(!up && !CI)('a change in the store is in force on every replica at once', () => {
  it('lowered on B: A refuses at the old level before any sync, and so do the agents it spawned', async () => {
    const p = `${PREFIX}-live`
    const a = await replica(p)
    const b = await replica(p)
    await a.authority.spawn({
      parent: 'moltbot-orchestrator',
      child: { id: 'live-kid', trustLevel: 'L3', grants: ['db:write:documents:namespace:user-123'], maxDelegationDepth: 0 },
    })
    const write = (subject: string) => ({
      subject,
      audience: 'agent-database-reader',
      scope: ['db:write:documents:namespace:user-123'],
      operation: 'write' as const,
      context: { session_id: 's', user_id: 'u', task_id: 't' },
    })
    await a.authority.mint(write('live-kid'))
    const r = await b.authority.requestTrustChange({ agentId: 'moltbot-orchestrator', level: 'L1', reason: 'incident', requestedBy: 'sec' })
    await b.authority.decideTrustChange(r.id, { approved: true, approver: 'alice' })
    // A has not synced: its own view is still L3, the store's is L1.
    expect(a.authority.agent('moltbot-orchestrator')?.level).toBe('L3')
    await expect(a.authority.mint(write('moltbot-orchestrator'))).rejects.toMatchObject({ code: 'ERR_TRUST_LEVEL' })
    await expect(a.authority.mint(write('live-kid'))).rejects.toMatchObject({ code: 'ERR_TRUST_LEVEL' })
    await expect(
      a.authority.spawn({
        parent: 'moltbot-orchestrator',
        child: { id: 'live-kid-2', trustLevel: 'L1', grants: [], maxDelegationDepth: 0 },
      }),
    ).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
    await expect(
      a.authority.spawn({ parent: 'live-kid', child: { id: 'live-grandkid', trustLevel: 'L1', grants: [], maxDelegationDepth: 0 } }),
    ).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
  })
})
