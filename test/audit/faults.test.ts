/**
 * The audit trail under a full disk: a file sink on a 256 KiB tmpfs that is filled (by
 * another file) and freed while events are recorded. The trail must hold whole lines only,
 * every event exactly once, and verify with the library and with `agent-trust audit verify`.
 * Needs root (mount); skipped elsewhere.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAuditLog, fileSink, verifyAuditTrail } from 'agent-trust/audit'
import { cli } from '../support/cli.js'

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

describe.skipIf(!root)('audit file sink on a full disk (tmpfs 256 KiB)', () => {
  const base = mkdtempSync(join(tmpdir(), 'at-audit-full-'))
  const mnt = join(base, 'mnt')
  beforeAll(() => {
    mkdirSync(mnt)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt])
  })
  afterAll(() => {
    spawnSync('umount', [mnt])
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
})
