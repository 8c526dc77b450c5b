/**
 * The audit trail in 40 lines: chain every decision of an authority and a verifier into a
 * JSONL file (and stdout), seal it, verify it, then show what an edit looks like.
 *
 * Prerequisites: `npm install`. Writes to a temporary directory.
 * Run: `npx tsx --conditions=agent-trust-source examples/audit-trail.ts`
 * Then try the CLI on a trail: `npx tsx --conditions=agent-trust-source src/cli/main.ts audit verify <file>`
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Authority } from 'agent-trust'
import { createAuditLog, fileSink, verifyAuditTrail } from 'agent-trust/audit'

const file = join(mkdtempSync(join(tmpdir(), 'agent-trust-audit-')), 'audit.jsonl')
// One chain per process; the file sink batches and fdatasyncs every 100 ms by default.
const audit = createAuditLog({ sinks: [fileSink(file)] })

const authority = await Authority.create({
  manifest: {
    agents: [
      { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
      {
        id: 'agent-database-reader',
        trustLevel: 'L2',
        tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
      },
    ],
  },
  audit,
})
const verifier = authority.createVerifier({ id: 'agent-database-reader', audit, mode: 'enforce' })
const context = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }

for (const namespace of ['user-123', 'user-999']) {
  try {
    const { token, scope, operation } = await authority.mintForTool({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      tool: 'read_documents',
      args: { namespace },
      context,
    })
    await verifier.verify(token, { scope, operation, tool: 'read_documents', args: { namespace } })
  } catch {
    // Denied, and recorded: the trail is the point here.
  }
}

await audit.close() // writes the seal: a chain without one may have lost its tail
console.log(`trail: ${file}`)
console.log('anchor this head somewhere else:', audit.head())
console.log('verify:', (await verifyAuditTrail(file, { requireSealed: true })).ok ? 'OK' : 'BROKEN')

const lines = readFileSync(file, 'utf8').split('\n')
lines[0] = (lines[0] as string).replace('"agent-summarizer-v2"', '"someone-else"')
writeFileSync(file, lines.join('\n'))
const report = await verifyAuditTrail(file)
console.log('after an edit:', report.firstBreak?.message)
