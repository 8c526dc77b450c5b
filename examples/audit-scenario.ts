/**
 * Audit trail and human-approved trust changes, on the seed: every
 * decision lands in a hash-chained JSONL file; a prompt-injected orchestrator can only
 * *request* more trust for its summarizer, and an operator (here: the store the
 * `agent-trust trust deny` command writes) refuses; whoever edits the trail afterwards to
 * hide a denial is caught by `verifyAuditTrail` (`agent-trust audit verify`).
 *
 * Prerequisites: `npm install`. Writes only to a temporary directory.
 * Run alone: `npx tsx --conditions=agent-trust-source examples/audit-scenario.ts`
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Authority, FileTrustChangeStore } from 'agent-trust'
import { createAuditLog, fileSink, verifyAuditTrail } from 'agent-trust/audit'
import { attempt, type Print } from './print.js'
import { CONTEXT, SEED_MANIFEST, SUMMARIZER } from './seed-manifest.js'

export async function runAuditScenario(print: Print): Promise<{ events: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'agent-trust-audit-scenario-'))
  try {
    const trail = join(dir, 'audit.jsonl')
    const audit = createAuditLog({ sinks: [fileSink(trail)] })
    const trustChanges = new FileTrustChangeStore(join(dir, 'trust-changes.json'))
    const authority = await Authority.create({ manifest: SEED_MANIFEST, audit, trustChanges })
    const verifier = authority.createVerifier({ id: 'agent-database-reader', audit, mode: 'enforce' })
    await authority.spawn({ parent: 'moltbot-orchestrator', child: SUMMARIZER })

    const read = async (namespace: string) => {
      const { token, scope, operation } = await authority.mintForTool({
        subject: SUMMARIZER.id,
        audience: 'agent-database-reader',
        tool: 'read_documents',
        args: { namespace },
        context: CONTEXT,
      })
      await verifier.verify(token, { scope, operation, tool: 'read_documents', args: { namespace } })
    }
    await attempt(print, 'agent-summarizer-v2 reads namespace user-123 (its grant)', () => read('user-123'))
    await attempt(print, 'agent-summarizer-v2 reads namespace user-999', () => read('user-999'))

    // The injected orchestrator wants its summarizer to spawn helpers: only a request is possible.
    const req = await authority.requestTrustChange({
      agentId: SUMMARIZER.id,
      level: 'L3',
      reason: 'needs to spawn helpers',
      requestedBy: 'moltbot-orchestrator',
    })
    print(`  PENDING  trust change ${SUMMARIZER.id} L2 -> L3 requested by moltbot-orchestrator (a human must decide)`)
    await attempt(print, 'agent-summarizer-v2 spawns a helper while the request waits', () =>
      authority.spawn({ parent: SUMMARIZER.id, child: { id: 'agent-helper', trustLevel: 'L1' } }),
    )
    // The operator, in another process: `agent-trust trust deny <id> --by alice`.
    await trustChanges.decide(req.id, {
      approved: false,
      decidedBy: 'alice@example.com',
      note: 'not justified',
      decidedAt: new Date().toISOString(),
    })
    await authority.syncTrustChanges()
    print(
      `  DENIED   trust change by alice@example.com; ${SUMMARIZER.id} stays ${authority.agent(SUMMARIZER.id)?.level}  [ERR_TRUST_CHANGE_DENIED]`,
    )

    await audit.close()
    const clean = await verifyAuditTrail(trail, { requireSealed: true })
    print(`  VERIFIED audit trail: ${clean.events} events in ${clean.chains.length} chain, sealed, every link intact`)

    // Someone rewrites the denied read (refused at mint) as allowed.
    const lines = readFileSync(trail, 'utf8').split('\n')
    const i = lines.findIndex((l) => l.includes('"code":"ERR_SCOPE_DENIED"'))
    lines[i] = (lines[i] as string).replace('"decision":"deny"', '"decision":"allow"')
    writeFileSync(trail, lines.join('\n'))
    const tampered = await verifyAuditTrail(trail, { requireSealed: true })
    print(
      `  DETECTED edited audit trail: first broken link at line ${tampered.firstBreak?.line} (${tampered.firstBreak?.kind})  [ERR_AUDIT_TAMPERED]`,
    )
    return { events: clean.events }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { events } = await runAuditScenario((line) => console.log(line))
  console.log(`\n${events} events chained.`)
}
