/**
 * The audit trail's cost per event at the default durability: target
 * <= 15 µs added per call. Two views:
 *   - verify with the audit log (JSONL file sink, 100 ms flush + fdatasync) against verify
 *     without one, interleaved batch by batch; each audited batch includes the time to
 *     write and sync its events (so the disk cost is counted, not deferred out of sight);
 *   - `record()` alone against a no-op `record()`: what the call path itself pays.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Authority, createVerifier, discardAudit, MemoryReplayRevocationStore, type AuditEventInput } from '../src/index.js'
import { createAuditLog, fileSink } from '../src/audit/index.js'
import { compare, row, type Row } from './lib.js'

const ADDED_US_TARGET = 15

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r))

export async function benchAudit(): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'agent-trust-bench-audit-'))
  try {
    const manifest = {
      agents: [
        { id: 'agent-summarizer-v2', trustLevel: 'L2' as const, grants: ['db:read:documents:namespace:*'] },
        { id: 'agent-database-reader', trustLevel: 'L2' as const },
      ],
    }
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest, store })
    const audit = createAuditLog({ sinks: [fileSink(join(dir, 'audit.jsonl'))] }) // defaults: 100 ms, fdatasync
    const audited = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, audit, mode: 'enforce' })
    const bare = createVerifier({
      id: 'agent-database-reader',
      issuers: [authority.trustedIssuer()],
      store,
      audit: discardAudit,
      mode: 'enforce',
    })
    const context = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }
    const scope = 'db:read:documents:namespace:user-123'
    const requirement = { scope, operation: 'read' as const, tool: 'read_documents', args: { namespace: 'user-123' } }

    // About one default flush interval of calls per batch, so each batch pays about one
    // write + fdatasync, as it would in steady traffic.
    const batches = 15
    const perBatch = 2000
    const tokens: string[] = []
    for (let i = 0; i < (2 * batches + 2) * perBatch; i++) {
      tokens.push(
        await authority.mint({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          scope: [scope],
          operation: 'read',
          context,
        }),
      )
    }
    let next = 0
    /** Wall and CPU (all threads: the write and fdatasync included) microseconds per call. */
    const runBatch = async (v: typeof bare, withAudit: boolean): Promise<{ wall: number; cpu: number }> => {
      const c0 = process.cpuUsage()
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < perBatch; i++) {
        await v.verify(tokens[next++], requirement)
        // Let timers (the audit flush) run, as a server's event loop would.
        if (i % 256 === 255) await yieldToLoop()
      }
      // Counted: writing and syncing this batch's events.
      if (withAudit) await audit.flush()
      const wall = Number(process.hrtime.bigint() - t0) / 1000 / perBatch
      const c = process.cpuUsage(c0)
      return { wall, cpu: (c.user + c.system) / perBatch }
    }
    await runBatch(audited, true) // warm-up
    await runBatch(bare, false)
    const a: Array<{ wall: number; cpu: number }> = []
    const b: Array<{ wall: number; cpu: number }> = []
    for (let i = 0; i < batches; i++) {
      if (i % 2 === 0) {
        a.push(await runBatch(audited, true))
        b.push(await runBatch(bare, false))
      } else {
        b.push(await runBatch(bare, false))
        a.push(await runBatch(audited, true))
      }
    }
    const added = (w: number, wo: number) => `<= +${ADDED_US_TARGET} µs (added ${(w - wo).toFixed(1)})`
    const cpuWith = median(a.map((x) => x.cpu))
    const cpuWithout = median(b.map((x) => x.cpu))
    const wallWith = median(a.map((x) => x.wall))
    const wallWithout = median(b.map((x) => x.wall))
    const rows: Row[] = [
      // CPU time is what the audit costs the process; it is also robust to other load on a shared machine.
      row({
        name: 'verify + audit, CPU per call (file sink, 100 ms fdatasync)',
        medianUs: cpuWith,
        floorName: 'verify, no audit',
        floorUs: cpuWithout,
        ratio: cpuWith / cpuWithout,
        target: added(cpuWith, cpuWithout),
        pass: cpuWith - cpuWithout <= ADDED_US_TARGET,
      }),
      // Wall time also includes waiting for fdatasync at the end of each batch (no call waits for it in service).
      row({
        name: 'verify + audit, wall per call incl. waiting for fdatasync',
        medianUs: wallWith,
        floorName: 'verify, no audit',
        floorUs: wallWithout,
        ratio: wallWith / wallWithout,
        target: `(info) added ${(wallWith - wallWithout).toFixed(1)} µs`,
      }),
    ]

    const event: AuditEventInput = {
      action: 'tool_call',
      decision: 'allow',
      origin: 'agent-summarizer-v2',
      destination: 'agent-database-reader',
      capability: [scope],
      tool: 'read_documents',
      jti: '3f1c2b9e-8a7d-4c3b-9f2e-1a2b3c4d5e6f',
      trustLevel: 'L2',
      context,
      argsHash: 'q8Zb1m3Vxk2Y1o0nB7sFqD9rT4uW6yA2cE5gH8jK0lM',
      enforced: true,
    }
    const recordOnly = await compare(
      'audit record() on the call path',
      () => audit.record(event),
      'no-op record()',
      () => discardAudit.record(event),
      { batches: 21, perBatch: 200 },
    )
    await audit.flush()
    rows.push({
      ...recordOnly,
      target: `<= +${ADDED_US_TARGET} µs (added ${(recordOnly.medianUs - recordOnly.floorUs).toFixed(1)})`,
      pass: recordOnly.medianUs - recordOnly.floorUs <= ADDED_US_TARGET,
    })
    const stats = audit.stats()
    await audit.close()
    if (stats.dropped > 0) throw new Error(`the bench dropped ${stats.dropped} audit events: its numbers would be wrong`)
    return rows
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
