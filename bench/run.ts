/**
 * `npm run bench`: every hot path against its floor, in one run. Medians and ratios only;
 * absolute times on a shared 2-core machine mean little. `npm run bench -- mcp` runs the
 * sections whose title contains "mcp".
 */
import { benchAudit } from './audit.js'
import { benchAuditModes } from './audit-modes.js'
import { benchEgress } from './egress.js'
import { benchIdentity } from './identity.js'
import { benchKernel } from './kernel.js'
import { benchLangchain } from './langchain.js'
import { printRows, type Row } from './lib.js'
import { benchMcp } from './mcp.js'
import { benchRedis } from './redis.js'
import { benchRedisAcks } from './redis-acks.js'
import { benchSandbox } from './sandbox.js'

const sections: Array<[string, () => Promise<Row[]>]> = [
  ['Kernel', benchKernel],
  ['Redis store', benchRedis],
  ['Redis store, replica acks', benchRedisAcks],
  ['Audit', benchAudit],
  ['Audit modes (deny, durable)', benchAuditModes],
  ['MCP', benchMcp],
  ['Egress', benchEgress],
  ['LangChain', benchLangchain],
  ['Identity', benchIdentity],
  ['Sandbox', benchSandbox],
]

const only = process.argv[2]
let missed = 0
for (const [title, run] of sections) {
  if (only !== undefined && !title.toLowerCase().includes(only.toLowerCase())) continue
  const rows = await run()
  printRows(title, rows)
  missed += rows.filter((r) => r.pass === false).length
}
console.log(missed === 0 ? '\nall targets met' : `\n${missed} target(s) missed`)
process.exit(0)
