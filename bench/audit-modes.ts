/**
 * What the audit log's fail-closed modes cost per call, against the default log, in one run
 * (file sinks on the same disk, interleaved batches, medians):
 *   - `onAuditFailure: 'deny'`: one synchronous check before each decision (mint, verify);
 *   - `durable: true`: a mint answers after its event is written and `fdatasync`ed. One mint
 *     in flight pays a whole write + sync; 64 in flight share them (one batch per turn of the
 *     event loop).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Authority, createVerifier, MemoryReplayRevocationStore } from '../src/index.js'
import { createAuditLog, fileSink, type AuditLogOptions, type ChainedAuditLog } from '../src/audit/index.js'
import { compare, type Row } from './lib.js'

export async function benchAuditModes(): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'agent-trust-bench-audit-modes-'))
  const logs: ChainedAuditLog[] = []
  try {
    const manifest = {
      agents: [
        { id: 'agent-summarizer-v2', trustLevel: 'L2' as const, grants: ['db:read:documents:namespace:*'] },
        { id: 'agent-database-reader', trustLevel: 'L2' as const },
      ],
    }
    const store = new MemoryReplayRevocationStore()
    const make = async (name: string, o: AuditLogOptions) => {
      const audit = createAuditLog({ sinks: [fileSink(join(dir, `${name}.jsonl`))], ...o })
      logs.push(audit)
      const authority = await Authority.create({ manifest, store, audit })
      const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, audit, mode: 'enforce' })
      return { authority, verifier }
    }
    const plain = await make('default', {})
    const deny = await make('deny', { onAuditFailure: 'deny' })
    const durable = await make('durable', { durable: true })
    const context = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }
    const scope = 'db:read:documents:namespace:user-123'
    const request = {
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [scope],
      operation: 'read' as const,
      context,
    }
    const requirement = { scope, operation: 'read' as const, tool: 'read_documents' }
    const mint = (a: Authority) => () => a.mint(request)
    const mint64 = (a: Authority) => () => Promise.all(Array.from({ length: 64 }, () => a.mint(request)))

    const rows: Row[] = []
    rows.push(
      await compare("mint, onAuditFailure 'deny'", mint(deny.authority), 'mint, default log', mint(plain.authority), {
        batches: 11,
        perBatch: 300,
      }),
    )

    const tokens = { deny: [] as string[], plain: [] as string[] }
    for (let i = 0; i < 12 * 300; i++) {
      tokens.deny.push(await deny.authority.mint(request))
      tokens.plain.push(await plain.authority.mint(request))
    }
    let d = 0
    let p = 0
    rows.push(
      await compare(
        "verify, onAuditFailure 'deny'",
        () => deny.verifier.verify(tokens.deny[d++], requirement),
        'verify, default log',
        () => plain.verifier.verify(tokens.plain[p++], requirement),
        { batches: 11, perBatch: 300 },
      ),
    )
    rows.push(
      await compare(
        'mint, durable, 1 in flight (waits for write + fdatasync)',
        mint(durable.authority),
        'mint, default log',
        mint(plain.authority),
        {
          batches: 11,
          perBatch: 50,
        },
      ),
    )
    const r64 = await compare(
      'mint, durable, 64 in flight (per 64)',
      mint64(durable.authority),
      'mint, default log, 64 in flight',
      mint64(plain.authority),
      {
        batches: 11,
        perBatch: 5,
      },
    )
    rows.push({ ...r64, name: 'mint, durable, 64 in flight (per mint)', medianUs: r64.medianUs / 64, floorUs: r64.floorUs / 64 })
    for (const l of logs) if (l.stats().dropped > 0) throw new Error('the bench dropped audit events: its numbers would be wrong')
    return rows
  } finally {
    for (const l of logs) await l.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
