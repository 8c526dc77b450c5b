/**
 * Trust changes need a human, across processes: the authority files a
 * request in a shared store, an operator decides it with the CLI in another process, the
 * authority applies it at its next sync. Plus the store's own guarantees, and a property
 * test that nothing in the token path changes a level.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  Authority,
  MemoryAuditLog,
  MemoryReplayRevocationStore,
  createVerifier,
  type TrustChangeRequest,
  type TrustLevel,
} from 'agent-trust'
import { createAuditLog, fileSink, verifyAuditTrail } from 'agent-trust/audit'
import { FileTrustChangeStore, MemoryTrustChangeStore, effectiveLevel } from '../../src/authority/trust-changes.js'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { cli, cliEnv, cliInProcess, workdir } from '../support/cli.js'

const deny = (code: string) => expect.objectContaining({ code })

async function setup(tag: string) {
  const dir = workdir(tag)
  const storeFile = join(dir, 'trust-changes.json')
  const trustChanges = new FileTrustChangeStore(storeFile)
  const auditFile = join(dir, 'authority-audit.jsonl')
  const audit = createAuditLog({ sinks: [fileSink(auditFile)] })
  const store = new MemoryReplayRevocationStore()
  const authority = await Authority.create({ manifest: MANIFEST, store, audit, trustChanges })
  const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
  const env = cliEnv(dir, { AGENT_TRUST_TRUST_STORE: storeFile, AGENT_TRUST_MANIFEST: join(dir, 'agent-trust.config.json') })
  const mint = () =>
    authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
  return { dir, storeFile, trustChanges, audit, auditFile, authority, verifier, env, mint }
}

describe('trust changes across processes (CLI)', () => {
  it('request in the authority, approve with the CLI, applied at the next sync with outstanding tokens revoked; all audited', async () => {
    const k = await setup('approve')
    const before = await k.mint()
    const req = await k.authority.requestTrustChange({
      agentId: 'agent-summarizer-v2',
      level: 'L3',
      reason: 'needs to spawn helpers',
      requestedBy: 'moltbot-orchestrator',
    })
    const listed = await cli(['trust', 'list', '--json'], { cwd: k.dir, env: k.env })
    expect(listed.code).toBe(0)
    expect(JSON.parse(listed.stdout).requests).toEqual([expect.objectContaining({ id: req.id, status: 'pending', from: 'L2', to: 'L3' })])
    // Not a terminal and no --yes: refused as a usage error, nothing decided.
    const unconfirmed = await cli(['trust', 'approve', req.id], { cwd: k.dir, env: k.env })
    expect(unconfirmed.code).toBe(2)
    expect((await k.trustChanges.get(req.id))?.status).toBe('pending')
    const ok = await cli(['trust', 'approve', req.id, '--yes', '--by', 'alice@example.com', '--note', 'ticket SEC-42', '--json'], {
      cwd: k.dir,
      env: k.env,
    })
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout).request).toMatchObject({ status: 'approved', decidedBy: 'alice@example.com', note: 'ticket SEC-42' })
    // Decided, but not applied until the authority syncs.
    expect(k.authority.agent('agent-summarizer-v2')?.level).toBe('L2')
    expect(await k.authority.syncTrustChanges()).toEqual([req.id])
    expect(k.authority.agent('agent-summarizer-v2')?.level).toBe('L3')
    await expect(k.verifier.verify(before, { scope: READ_SCOPE, operation: 'read' })).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    const after = await k.mint()
    expect(JSON.parse(Buffer.from(after.split('.')[1] as string, 'base64url').toString()).trust_level).toBe('L3')
    await expect(k.verifier.verify(after, { scope: READ_SCOPE, operation: 'read' })).resolves.toBeDefined()
    expect(await k.authority.syncTrustChanges()).toEqual([]) // applied once
    expect((await k.trustChanges.get(req.id))?.appliedAt).toBeDefined()
    // Audited on both sides, each trail verifying.
    await k.audit.close()
    const notes = readFileSync(k.auditFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((e) => e.action === 'trust_change')
      .map((e) => e.note as string)
    expect(notes[0]).toMatch(/^requested L2->L3/)
    expect(notes[1]).toMatch(/^applied \(approved by alice@example.com\) L2->L3 .*outstanding tokens revoked/)
    expect((await verifyAuditTrail(k.auditFile, { requireSealed: true })).ok).toBe(true)
    const cliTrail = k.env.AGENT_TRUST_AUDIT_FILE as string
    expect(readFileSync(cliTrail, 'utf8')).toMatch(/"note":"approved L2->L3 .*\(cli\)"/)
    expect((await verifyAuditTrail(cliTrail, { requireSealed: true })).ok).toBe(true)
  })

  it('deny with the CLI: the level stays; a second decision is refused (exit 1)', async () => {
    const k = await setup('deny')
    const req = await k.authority.requestTrustChange({
      agentId: 'agent-status-reader',
      level: 'L2',
      reason: 'write access',
      requestedBy: 'ops',
    })
    const denied = await cliInProcess(['trust', 'deny', req.id, '--by', 'bob', '--json'], { env: k.env })
    expect(denied.code).toBe(0)
    expect(JSON.parse(denied.stdout).request.status).toBe('denied')
    const again = await cliInProcess(['trust', 'approve', req.id, '--yes', '--json'], { env: k.env })
    expect(again.code).toBe(1)
    expect(JSON.parse(again.stdout).error.code).toBe('ERR_TRUST_CHANGE_DENIED')
    await k.authority.syncTrustChanges()
    expect(k.authority.agent('agent-status-reader')?.level).toBe('L1')
    expect(k.authority.listTrustChanges('denied').map((r) => r.id)).toEqual([req.id])
    expect((await cliInProcess(['trust', 'deny', '00000000-0000-4000-8000-000000000000'], { env: k.env })).code).toBe(1)
    expect((await cliInProcess(['trust', 'deny', 'not-an-id'], { env: k.env })).code).toBe(2)
    await k.audit.close()
  })

  it('two operators approving at once from two processes: exactly one wins', async () => {
    const k = await setup('race')
    const req = await k.authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'r', requestedBy: 'ops' })
    const [a, b] = await Promise.all([
      cli(['trust', 'approve', req.id, '--yes', '--by', 'alice'], { cwd: k.dir, env: k.env }),
      cli(['trust', 'approve', req.id, '--yes', '--by', 'carol'], { cwd: k.dir, env: k.env }),
    ])
    expect([a.code, b.code].sort()).toEqual([0, 1])
    const decided = await k.trustChanges.get(req.id)
    expect(decided?.decidedBy).toBe(a.code === 0 ? 'alice' : 'carol')
    await k.audit.close()
  })

  it('a stale request (the level changed since) is refused; the CLI can file requests the authority then sees', async () => {
    const k = await setup('stale')
    const up = await k.authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L3', reason: 'a', requestedBy: 'ops' })
    const down = await k.authority.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L1', reason: 'b', requestedBy: 'ops-2' })
    expect((await cliInProcess(['trust', 'approve', up.id, '--yes'], { env: k.env })).code).toBe(0)
    const stale = await cliInProcess(['trust', 'approve', down.id, '--yes'], { env: k.env })
    expect(stale.code).toBe(1)
    expect(stale.stderr).toMatch(/now L3/)
    await k.authority.syncTrustChanges()
    // The authority refuses it too, and says so in its trail.
    await expect(k.authority.decideTrustChange(down.id, { approved: true, approver: 'alice' })).rejects.toThrow(
      deny('ERR_TRUST_CHANGE_DENIED'),
    )
    const filed = await cliInProcess(['trust', 'request', 'agent-summarizer-v2', 'L2', '--reason', 'back to normal', '--json'], {
      env: k.env,
    })
    expect(filed.code).toBe(0)
    const id = JSON.parse(filed.stdout).request.id as string
    expect(JSON.parse(filed.stdout).request.from).toBe('L3')
    await k.authority.syncTrustChanges()
    expect(k.authority.listTrustChanges('pending').map((r) => r.id)).toContain(id)
    await k.authority.decideTrustChange(id, { approved: true, approver: 'alice' })
    expect(k.authority.agent('agent-summarizer-v2')?.level).toBe('L2')
    expect((await cliInProcess(['trust', 'request', 'agent-summarizer-v2', 'L2', '--reason', 'x'], { env: k.env })).code).toBe(1) // already L2
    expect((await cliInProcess(['trust', 'request', 'nobody', 'L2', '--reason', 'x'], { env: k.env })).code).toBe(1)
    expect((await cliInProcess(['trust', 'request', 'agent-summarizer-v2', 'L9', '--reason', 'x'], { env: k.env })).code).toBe(2)
    expect((await cliInProcess(['trust', 'request', 'agent-summarizer-v2', 'L1'], { env: k.env })).code).toBe(2)
    await k.audit.close()
  })

  it('a restarted authority restores approved levels from the store', async () => {
    const k = await setup('restart')
    const req = await k.authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'r', requestedBy: 'ops' })
    await k.authority.decideTrustChange(req.id, { approved: true, approver: 'alice' })
    const again = await Authority.create({ manifest: MANIFEST, trustChanges: new FileTrustChangeStore(k.storeFile) })
    expect(again.agent('agent-status-reader')?.level).toBe('L2')
    expect(again.listTrustChanges('approved')).toHaveLength(1)
    await k.audit.close()
  })

  it('interactive approval: only "yes" approves', async () => {
    const k = await setup('tty')
    const req = await k.authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'r', requestedBy: 'ops' })
    const questions: string[] = []
    const no = await cliInProcess(['trust', 'approve', req.id], { env: k.env, confirm: async (q) => (questions.push(q), false) })
    expect(no.code).toBe(1)
    expect(questions[0]).toMatch(/RAISING agent-status-reader from L1 to L2/)
    expect((await k.trustChanges.get(req.id))?.status).toBe('pending')
    expect((await cliInProcess(['trust', 'approve', req.id], { env: k.env, confirm: async () => true })).code).toBe(0)
    await k.audit.close()
  })
})

describe('trust-change store', () => {
  const base: TrustChangeRequest = {
    id: '',
    agentId: 'a',
    from: 'L1',
    to: 'L2',
    reason: 'r',
    requestedBy: 'o',
    createdAt: new Date().toISOString(),
    status: 'pending',
  }

  it('memory and file stores: one decision wins, precondition checked atomically, markApplied once', async () => {
    const dir = workdir('store')
    for (const store of [new MemoryTrustChangeStore(), new FileTrustChangeStore(join(dir, 's.json'))]) {
      await store.add({ ...base, id: 'r1' })
      await expect(store.add({ ...base, id: 'r1' })).rejects.toThrow(deny('ERR_TRUST_CHANGE_DENIED'))
      const results = await Promise.allSettled(
        [1, 2, 3, 4].map((i) => store.decide('r1', { approved: i % 2 === 0, decidedBy: `op${i}`, decidedAt: new Date().toISOString() })),
      )
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
      await store.add({ ...base, id: 'r2' })
      await expect(
        store.decide('r2', { approved: true, decidedBy: 'x', decidedAt: '' }, () => {
          throw new Error('no')
        }),
      ).rejects.toThrow('no')
      expect((await store.get('r2'))?.status).toBe('pending')
      await expect(store.decide('r2', { approved: true, decidedBy: ' ', decidedAt: '' })).rejects.toThrow(deny('ERR_TRUST_CHANGE_DENIED'))
      await store.markApplied('r1', 't1')
      await store.markApplied('r1', 't2')
      const r1 = await store.get('r1')
      if (r1?.status === 'approved') expect(r1.appliedAt).toBe('t1')
      expect((await store.list('pending')).map((r) => r.id)).toEqual(['r2'])
    }
  })

  it('a corrupted store file fails closed with a coded error', async () => {
    const dir = workdir('corrupt')
    const file = join(dir, 's.json')
    const { writeFileSync } = await import('node:fs')
    writeFileSync(file, '{"version":1,"requests":[{"id":"x","status":"approved"}]}')
    const store = new FileTrustChangeStore(file)
    await expect(store.list()).rejects.toThrow(deny('ERR_CONFIG_INVALID'))
    await expect(Authority.create({ manifest: MANIFEST, trustChanges: store })).rejects.toThrow(deny('ERR_CONFIG_INVALID'))
    writeFileSync(file, 'not json')
    await expect(store.list()).rejects.toThrow(deny('ERR_CONFIG_INVALID'))
  })

  it('effectiveLevel follows approved changes in decision order', () => {
    const r = (id: string, to: TrustLevel, decidedAt: string, status: TrustChangeRequest['status'] = 'approved'): TrustChangeRequest => ({
      ...base,
      id,
      to,
      decidedAt,
      status,
    })
    expect(effectiveLevel('a', 'L1', [r('1', 'L3', '2026-01-02'), r('2', 'L0', '2026-01-01'), r('3', 'L2', '2026-01-03', 'denied')])).toBe(
      'L3',
    )
    expect(effectiveLevel('b', 'L1', [r('1', 'L3', '2026-01-02')])).toBe('L1')
  })
})

describe('nothing in the token path changes a level', () => {
  it('property: any sequence of mint, mintForTool, exchange, spawn and verify calls, however malformed, leaves every level as the manifest says', async () => {
    const levels = new Map(MANIFEST.agents.map((a) => [a.id, a.trustLevel]))
    const agents = [...levels.keys(), 'nobody', 'agent-child-x']
    const field = fc.oneof(fc.constantFrom(...agents), fc.constantFrom('L3', 'L0', 'admin'), fc.string({ maxLength: 12 }))
    const op = fc.record({
      kind: fc.constantFrom('mint', 'tool', 'exchange', 'spawn', 'verify'),
      subject: fc.constantFrom(...agents),
      audience: fc.constantFrom(...agents),
      level: fc.constantFrom('L0', 'L1', 'L2', 'L3', 'L9'),
      extra: fc.dictionary(fc.constantFrom('trustLevel', 'trust_level', 'level', 'status', 'approved', 'approver'), field, { maxKeys: 3 }),
    })
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const audit = new MemoryAuditLog()
        const trustChanges = new MemoryTrustChangeStore()
        const store = new MemoryReplayRevocationStore()
        const authority = await Authority.create({
          manifest: MANIFEST,
          store,
          audit,
          trustChanges,
          approver: async () => ({ approved: true, approver: 'should-never-be-asked' }),
        })
        const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
        const tokens: string[] = []
        for (const o of ops) {
          const x = o.extra as Record<string, unknown>
          const attempt = async (): Promise<unknown> => {
            switch (o.kind) {
              case 'mint':
                return tokens.push(
                  await authority.mint({
                    subject: o.subject,
                    audience: o.audience,
                    scope: [READ_SCOPE],
                    operation: 'read',
                    context: CONTEXT,
                    ...x,
                  } as never),
                )
              case 'tool':
                return authority.mintForTool({
                  subject: o.subject,
                  audience: o.audience,
                  tool: 'read_documents',
                  args: { namespace: 'user-123', ...x },
                  context: CONTEXT,
                } as never)
              case 'exchange': {
                const t = tokens[tokens.length - 1]
                // Re-sign nothing: a holder can only present what it got, claims edited or not.
                const edited =
                  t === undefined
                    ? 'x.y.z'
                    : `${t.split('.')[0]}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(t.split('.')[1] as string, 'base64url').toString()), trust_level: o.level })).toString('base64url')}.${t.split('.')[2]}`
                return authority.exchange({
                  token: o.level === 'L9' ? edited : (t ?? ''),
                  holder: o.audience,
                  audience: o.subject,
                  ...x,
                } as never)
              }
              case 'spawn':
                return authority.spawn({ parent: o.subject, child: { id: o.audience, trustLevel: o.level, ...x } } as never)
              case 'verify':
                return verifier.verify(tokens.shift(), { scope: READ_SCOPE, operation: 'write', ...x } as never)
            }
          }
          await attempt().catch(() => undefined)
        }
        for (const [id, level] of levels) expect(authority.agent(id)?.level).toBe(level)
        expect(await trustChanges.list()).toEqual([])
        expect(audit.events.some((e) => e.action === 'trust_change')).toBe(false)
      }),
      { numRuns: 60 },
    )
  })
})
