/**
 * The trust-change workflow's store cannot be abused: nobody approves their own request (in
 * the kernel, and from a store file that says otherwise), one agent cannot flood the store or
 * the operators' queue, and a lock left by a killed process is broken at once while a live
 * holder's lock is respected.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { Authority, FileTrustChangeStore, MemoryTrustChangeStore } from 'agent-trust'
import { MANIFEST } from '../support/kernel.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

const dir = mkdtempSync(join(tmpdir(), 'agent-trust-trust-store-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const deny = (rule: string) => expect.objectContaining({ code: 'ERR_TRUST_CHANGE_DENIED', details: expect.objectContaining({ rule }) })

describe('approver is never the requester', () => {
  for (const kind of ['memory', 'file'] as const) {
    it(`refuses a self-approval in the kernel (${kind} store), and lets the requester withdraw`, async () => {
      const trustChanges = kind === 'memory' ? new MemoryTrustChangeStore() : new FileTrustChangeStore(join(dir, `self-${kind}.json`))
      const authority = await Authority.create({ manifest: MANIFEST, trustChanges })
      const req = await authority.requestTrustChange({
        agentId: 'agent-summarizer-v2',
        level: 'L3',
        reason: 'need more',
        requestedBy: 'mallory',
      })
      await expect(authority.decideTrustChange(req.id, { approved: true, approver: 'mallory' })).rejects.toThrow(deny('self-approval'))
      expect(authority.agent('agent-summarizer-v2')?.level).toBe('L2')
      await expect(authority.decideTrustChange(req.id, { approved: false, approver: 'mallory' })).resolves.toMatchObject({
        status: 'denied',
      })
    })
  }

  it('a store file holding a self-approved raise is not applied at start or at sync', async () => {
    const file = join(dir, 'forged.json')
    const now = new Date().toISOString()
    writeFileSync(
      file,
      JSON.stringify({
        version: 1,
        requests: [
          {
            id: 'forged-1',
            agentId: 'agent-summarizer-v2',
            from: 'L2',
            to: 'L3',
            reason: 'self',
            requestedBy: 'agent-summarizer-v2',
            decidedBy: 'agent-summarizer-v2',
            createdAt: now,
            decidedAt: now,
            status: 'approved',
          },
        ],
      }),
      { mode: 0o600 },
    )
    const authority = await Authority.create({ manifest: MANIFEST, trustChanges: new FileTrustChangeStore(file) })
    expect(authority.agent('agent-summarizer-v2')?.level).toBe('L2')
    expect(await authority.syncTrustChanges()).toEqual([])
    expect(authority.agent('agent-summarizer-v2')?.level).toBe('L2')
  })
})

describe('no flooding', () => {
  it('100k requests from one requester are refused past the cap, before anything is written; others still file', async () => {
    const trustChanges = new MemoryTrustChangeStore()
    const authority = await Authority.create({ manifest: MANIFEST, trustChanges })
    const agents = ['agent-summarizer-v2', 'agent-status-reader', 'agent-untrusted', 'agent-database-reader', 'agent-other-server']
    const rules = new Map<string, number>()
    let accepted = 0
    for (let i = 0; i < 100_000; i++) {
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
    // One pending request per agent (the status reader is already L1: refused as a no-op).
    expect(accepted).toBe(agents.length - 1)
    expect(rules.get('duplicate-pending')).toBeGreaterThan(79_000)
    expect([...rules.values()].reduce((a, b) => a + b, 0)).toBe(100_000 - accepted)
    expect((await trustChanges.list()).length).toBe(accepted)
    await expect(
      authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L1', reason: 'ops view', requestedBy: 'alice' }),
    ).resolves.toMatchObject({ status: 'pending' })
  })

  it('caps the pending requests of one requester over many agents', async () => {
    const agents = Array.from({ length: 20 }, (_, i) => ({ id: `worker-${i}`, trustLevel: 'L2' as const }))
    const authority = await Authority.create({ manifest: { ...MANIFEST, agents: [...MANIFEST.agents, ...agents] } })
    const outcomes: string[] = []
    for (const a of agents)
      outcomes.push(
        await authority.requestTrustChange({ agentId: a.id, level: 'L1', reason: 'r', requestedBy: 'flooder' }).then(
          () => 'ok',
          (e: { details?: { rule?: string } }) => e.details?.rule ?? 'error',
        ),
      )
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(16)
    expect(outcomes.slice(16)).toEqual(['too-many-pending', 'too-many-pending', 'too-many-pending', 'too-many-pending'])
  })
})

describe('the file store lock', () => {
  it('validates its options', async () => {
    await expectOptionMisuse(() => new FileTrustChangeStore(''), { path: 'path' })
    await expectOptionMisuse(() => new FileTrustChangeStore('/tmp/t.json', { mode: 0o1777 }), { path: 'options.mode' })
    await expectOptionMisuse(() => new FileTrustChangeStore('/tmp/t.json', { lockTimeoutMs: 0 }), { path: 'options.lockTimeoutMs' })
    await expectOptionMisuse(() => new FileTrustChangeStore('/tmp/t.json', { staleLockMs: '30s' as never }), {
      path: 'options.staleLockMs',
    })
    await expectOptionMisuse(() => new FileTrustChangeStore('/tmp/t.json', { lockTimeout: 5 } as never), { path: 'options.lockTimeout' })
    await expectOptionMisuse(() => new FileTrustChangeStore('/tmp/t.json', { [HOSTILE_KEY]: 1 } as never), {
      path: `options${HOSTILE_KEY_PATH}`,
    })
  })

  it('breaks a lock whose holder was killed at once, and respects a live holder', async () => {
    const file = join(dir, 'locked.json')
    const store = new FileTrustChangeStore(file, { lockTimeoutMs: 500, staleLockMs: 60_000 })
    // A killed writer: a PID that was alive a moment ago and is gone now.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    writeFileSync(`${file}.lock`, dead.stdout)
    const t0 = Date.now()
    const authority = await Authority.create({ manifest: MANIFEST, trustChanges: store })
    await authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L1', reason: 'r', requestedBy: 'ops' })
    expect(Date.now() - t0).toBeLessThan(30_000) // far below staleLockMs: the dead holder was detected
    expect(JSON.parse(readFileSync(file, 'utf8')).requests).toHaveLength(1)
    // A live holder (our parent process) keeps its lock: the store times out, fails closed.
    writeFileSync(`${file}.lock`, String(process.ppid))
    await expect(
      authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'r', requestedBy: 'ops' }),
    ).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
    rmSync(`${file}.lock`)
  })
})

describe('decision order is the store order, never a decider clock', () => {
  it('raise then lower decided on hosts 10 s apart: the lower level wins, after a restart too', async () => {
    const file = join(dir, 'order.json')
    const a = await Authority.create({ manifest: MANIFEST, trustChanges: new FileTrustChangeStore(file) })
    const raise = await a.requestTrustChange({
      agentId: 'agent-summarizer-v2',
      level: 'L3',
      reason: 'spawn',
      requestedBy: 'orchestrator-ops',
    })
    await a.decideTrustChange(raise.id, { approved: true, approver: 'alice' })
    const lower = await a.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L0', reason: 'incident', requestedBy: 'secops' })
    // The second decider's clock runs 10 s behind: its decidedAt is earlier than the first.
    const { FileTrustChangeStore: Store } = await import('agent-trust')
    const skewed = new Store(file)
    const behind = new Date(Date.now() - 10_000).toISOString()
    await skewed.decide(lower.id, { approved: true, decidedBy: 'bob', decidedAt: behind })
    const stored = (await skewed.list()).sort((x, y) => (x.decisionSeq ?? 0) - (y.decisionSeq ?? 0))
    expect(stored.map((r) => r.to)).toEqual(['L3', 'L0'])
    expect((stored[1]?.decidedAt ?? '') < (stored[0]?.decidedAt ?? '')).toBe(true)
    await a.syncTrustChanges()
    expect(a.agent('agent-summarizer-v2')?.level).toBe('L0')
    const restarted = await Authority.create({ manifest: MANIFEST, trustChanges: new FileTrustChangeStore(file) })
    expect(restarted.agent('agent-summarizer-v2')?.level).toBe('L0')
  })
})

describe('a change revokes up to the last minimum iat, and a lowering cascades', () => {
  it('raise then lower in the same second: a token minted between them, at the higher level, is revoked', async () => {
    const authority = await Authority.create({ manifest: MANIFEST })
    const verifier = authority.createVerifier({ id: 'agent-database-reader' })
    const change = async (level: 'L1' | 'L3', by: string) => {
      const r = await authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level, reason: 'r', requestedBy: by })
      await authority.decideTrustChange(r.id, { approved: true, approver: 'alice' })
    }
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1, 0, 0, 0, 100), toFake: ['Date'] })
    try {
      await change('L3', 'ops')
      const between = await authority.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: ['db:read:documents:namespace:user-123'],
        operation: 'read',
        context: { session_id: 's', user_id: 'u', task_id: 't' },
      })
      vi.setSystemTime(Date.UTC(2026, 0, 1, 0, 0, 0, 900)) // same second
      await change('L1', 'sec')
      vi.setSystemTime(Date.UTC(2026, 0, 1, 0, 0, 3))
      await expect(verifier.verify(between, { scope: 'db:read:documents:namespace:user-123', operation: 'read' })).rejects.toMatchObject({
        code: 'ERR_AGENT_REVOKED',
      })
    } finally {
      vi.useRealTimers()
    }
  })

  it('lowering an orchestrator L3 -> L1 clamps its spawned children, which may no longer spawn or write', async () => {
    const authority = await Authority.create({ manifest: MANIFEST })
    const verifier = authority.createVerifier({ id: 'agent-database-reader' })
    await authority.spawn({
      parent: 'moltbot-orchestrator',
      child: { id: 'kid', trustLevel: 'L3', grants: ['db:read:documents:namespace:user-123'], maxDelegationDepth: 0 },
    })
    const old = await authority.mint({
      subject: 'kid',
      audience: 'agent-database-reader',
      scope: ['db:read:documents:namespace:user-123'],
      operation: 'read',
      context: { session_id: 's', user_id: 'u', task_id: 't' },
    })
    const r = await authority.requestTrustChange({ agentId: 'moltbot-orchestrator', level: 'L1', reason: 'incident', requestedBy: 'sec' })
    await authority.decideTrustChange(r.id, { approved: true, approver: 'alice' })
    expect(authority.agent('kid')?.level).toBe('L1')
    await expect(
      authority.spawn({ parent: 'kid', child: { id: 'grandkid', trustLevel: 'L1', grants: [], maxDelegationDepth: 0 } }),
    ).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
    await expect(verifier.verify(old, { scope: 'db:read:documents:namespace:user-123', operation: 'read' })).rejects.toMatchObject({
      code: 'ERR_AGENT_REVOKED',
    })
  })
})
