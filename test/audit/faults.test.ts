/**
 * The audit trail under a full disk: a file sink on a 256 KiB tmpfs that is filled (by
 * another file) and freed while events are recorded. The trail must hold whole lines only,
 * every event exactly once, and verify with the library and with `agent-trust audit verify`.
 * With `onAuditFailure: 'deny'` no call is allowed while the trail cannot be written; with
 * `durable: true` a decision answers only once its event is on disk.
 * Needs root (mount); skipped elsewhere.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryReplayRevocationStore } from 'agent-trust'
import { createAuditLog, fileSink, verifyAuditTrail, type ChainedAuditLog } from 'agent-trust/audit'
import { cli } from '../support/cli.js'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'

const root = typeof process.getuid === 'function' && process.getuid() === 0 && process.platform === 'linux'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Fill the file system with `filler` until ENOSPC (dd stops there with a non-zero status). */
function fill(filler: string): void {
  spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4096'], { stdio: 'ignore' })
}

function seqsOf(path: string): number[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { seq: number }).seq)
}

// Mounting a tmpfs needs root: skipped for a non-root developer; CI runs as root, so it runs there.
describe.skipIf(!root)('audit file sink on a full disk (tmpfs 256 KiB)', () => {
  const base = mkdtempSync(join(tmpdir(), 'at-audit-full-'))
  const mnt = join(base, 'mnt')
  beforeAll(() => {
    mkdirSync(mnt)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt])
  })
  afterEach(() => {
    // Each test starts on an empty disk.
    for (const f of ['audit.jsonl', 'filler']) rmSync(join(mnt, f), { force: true })
  })
  afterAll(() => {
    // Lazily if a failed test left a trail file open: the mount never outlives the run.
    if (spawnSync('umount', [mnt]).status !== 0) spawnSync('umount', ['-l', mnt])
    rmSync(base, { recursive: true, force: true })
  })

  it('filled and freed mid-run: whole lines, every event once, the trail verifies (library and CLI)', async () => {
    const file = join(mnt, 'audit.jsonl')
    const filler = join(mnt, 'filler')
    const errors: string[] = []
    const log = createAuditLog({
      sinks: [fileSink(file)],
      flushIntervalMs: 5,
      batchSize: 16,
      onError: (e) => errors.push((e as NodeJS.ErrnoException).code ?? e.message),
    })
    const event = (i: number) =>
      log.record({
        action: 'tool_call',
        decision: 'allow',
        origin: 'agent-a',
        destination: 'agent-b',
        note: `event ${i} ${'x'.repeat(120)}`,
      })
    let i = 0
    for (; i < 100; i++) event(i)
    await log.flush()
    fill(filler)
    // The disk is full: batches fail part way (the last page of the trail still has room).
    for (; i < 400; i++) {
      event(i)
      if (i % 10 === 0) await sleep(2)
    }
    await sleep(50)
    expect(errors).toContain('ENOSPC')
    rmSync(filler)
    for (; i < 500; i++) event(i)
    await log.close()

    expect(log.stats().dropped).toBe(0)
    const text = readFileSync(file, 'utf8')
    expect(text.endsWith('\n')).toBe(true)
    const seqs = seqsOf(file)
    // 500 events and the seal, each exactly once, in order.
    expect(seqs).toEqual(Array.from({ length: 501 }, (_, n) => n))
    const report = await verifyAuditTrail(file, { requireSealed: true })
    expect(report.ok).toBe(true)
    expect(report.events).toBe(501)
    const r = await cli(['audit', 'verify', file, '--require-sealed'], { cwd: base })
    expect(r.stdout).toMatch(/audit trail OK: 1 chain\(s\), 501 event\(s\)/)
    expect(r.code).toBe(0)
  })

  const read = { scope: READ_SCOPE, operation: 'read' as const }
  const mintRequest = {
    subject: 'agent-summarizer-v2',
    audience: 'agent-database-reader',
    scope: [READ_SCOPE],
    operation: 'read' as const,
    context: CONTEXT,
    ttlSeconds: 300,
  }
  const codeOf = (p: Promise<unknown>): Promise<string> =>
    p.then(
      () => 'allowed',
      (e: unknown) => String((e as { code?: unknown }).code),
    )
  const jtiOf = (t: string): string => (JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti

  /** Fill the disk, then record until a write has failed (the trail's last page may still take a few lines). */
  async function fillUntilFailing(log: ChainedAuditLog, filler: string): Promise<void> {
    fill(filler)
    const end = Date.now() + 5000
    while (log.stats().writable && Date.now() < end) {
      log.record({ action: 'mode', decision: 'allow', note: 'x'.repeat(200) })
      await sleep(10)
    }
    expect(log.stats().writable).toBe(false)
  }

  async function waitWritable(log: ChainedAuditLog): Promise<void> {
    const end = Date.now() + 5000
    while (!log.stats().writable && Date.now() < end) await sleep(10)
    expect(log.stats().writable).toBe(true)
  }

  it("onAuditFailure 'deny': while the trail cannot be written no call is allowed (coded 503); after freeing, calls are allowed again", async () => {
    const file = join(mnt, 'audit.jsonl')
    const filler = join(mnt, 'filler')
    const log = createAuditLog({ sinks: [fileSink(file)], flushIntervalMs: 10, onAuditFailure: 'deny', onError: () => undefined })
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest: MANIFEST, store, audit: log })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, audit: log })
    const before = await authority.mint(mintRequest)
    expect(await codeOf(verifier.verify(await authority.mint(mintRequest), read))).toBe('allowed')

    await fillUntilFailing(log, filler)
    const outcomes: string[] = []
    for (let i = 0; i < 20; i++) {
      outcomes.push(await codeOf(authority.mint(mintRequest)))
      outcomes.push(await codeOf(verifier.verify(before, read)))
      outcomes.push(await codeOf(authority.spawn({ parent: 'moltbot-orchestrator', child: { id: `child-${i}`, trustLevel: 'L1' } })))
      outcomes.push(
        await codeOf(authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'test', requestedBy: 'op' })),
      )
      await sleep(5)
    }
    expect(new Set(outcomes)).toEqual(new Set(['ERR_AUDIT_UNAVAILABLE']))
    const refused = await authority.mint(mintRequest).catch((e: unknown) => e)
    expect(refused).toMatchObject({ code: 'ERR_AUDIT_UNAVAILABLE', details: { rule: 'onAuditFailure' } })
    expect((await import('agent-trust')).ERROR_CATALOG.ERR_AUDIT_UNAVAILABLE.status).toBe(503)

    rmSync(filler)
    await waitWritable(log)
    // The token refused during the outage was not consumed: it verifies now, once.
    expect(await codeOf(verifier.verify(before, read))).toBe('allowed')
    expect(await codeOf(verifier.verify(before, read))).toBe('ERR_TOKEN_REPLAYED')
    for (let i = 0; i < 10; i++) expect(await codeOf(verifier.verify(await authority.mint(mintRequest), read))).toBe('allowed')
    await log.close()
    expect(log.stats().dropped).toBe(0)
    // Every denial is in the trail, once; the trail verifies.
    const report = await verifyAuditTrail(file, { requireSealed: true })
    expect(report.ok).toBe(true)
    const events = readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { code?: string; seq: number })
    expect(events.filter((e) => e.code === 'ERR_AUDIT_UNAVAILABLE').length).toBe(81)
    expect(events.map((e) => e.seq)).toEqual(events.map((_, n) => n))
  })

  it('durable: a mint resolves only once its event is on disk; a mint whose event cannot be written is refused', async () => {
    const file = join(mnt, 'audit.jsonl')
    const filler = join(mnt, 'filler')
    // The timer never fires within the test: only a durable commit writes.
    const log = createAuditLog({ sinks: [fileSink(file)], flushIntervalMs: 60_000, durable: true, onError: () => undefined })
    const authority = await Authority.create({ manifest: MANIFEST, audit: log })
    const onDisk = (needle: string): boolean => readFileSync(file, 'utf8').includes(needle)

    const token = await authority.mint(mintRequest)
    expect(onDisk(jtiOf(token))).toBe(true)
    const tokens = await Promise.all(Array.from({ length: 50 }, () => authority.mint(mintRequest)))
    for (const t of tokens) expect(onDisk(jtiOf(t))).toBe(true)
    const child = await authority.spawn({ parent: 'moltbot-orchestrator', child: { id: 'child-durable', trustLevel: 'L1' } })
    expect(onDisk(`"destination":"${child.id}"`)).toBe(true)
    const req = await authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'test', requestedBy: 'op' })
    expect(onDisk(`requested L1->L2 (${req.id})`)).toBe(true)
    await authority.decideTrustChange(req.id, { approved: true, approver: 'alice' })
    expect(onDisk(`approved L1->L2 (${req.id})`)).toBe(true)

    // A full disk: the decision is not answered as allowed.
    fill(filler)
    const outcomes: string[] = []
    for (let i = 0; i < 20; i++)
      outcomes.push(await codeOf(authority.mint({ ...mintRequest, context: { ...CONTEXT, task_id: `pad-${'x'.repeat(200)}` } })))
    expect(outcomes).toContain('ERR_AUDIT_UNAVAILABLE')
    // Once one failed, none after it was allowed while the disk stayed full.
    expect(outcomes.slice(outcomes.indexOf('ERR_AUDIT_UNAVAILABLE'))).not.toContain('allowed')
    rmSync(filler)
    const after = await authority.mint(mintRequest)
    expect(onDisk(jtiOf(after))).toBe(true)
    await log.close()
    const report = await verifyAuditTrail(file, { requireSealed: true })
    expect(report.ok).toBe(true)
    const seqs = seqsOf(file)
    expect(seqs).toEqual(seqs.map((_, n) => n))
  })
})
