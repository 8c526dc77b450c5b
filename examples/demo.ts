/**
 * `npm start`: the seed's scenario (shared/seed) end to end, on in-memory defaults.
 * Prerequisites: `npm install`. No server to start: every server below listens on loopback
 * and every process is started and stopped by this script.
 */
import { runAuditScenario } from './audit-scenario.js'
import { runEgressScenario } from './egress-scenario.js'
import { runIdentityScenario } from './identity-scenario.js'
import { runKernelScenario } from './kernel-scenario.js'
import { runLangchainScenario } from './langchain-scenario.js'
import { mcpScenario } from './mcp-scenario.js'
import { describeTally, tallied, type Tally } from './print.js'
import { runStoresScenario } from './stores-scenario.js'

// Every decision line goes through `print`, so the summary counts exactly what was printed.
const { print, tally } = tallied((line: string) => console.log(line))
const perSection: { title: string; allowed: number; denied: number }[] = []
let before: Tally = { allowed: 0, denied: 0 }
const closeSection = () => {
  const last = perSection.at(-1)
  if (last === undefined) return
  last.allowed = tally.allowed - before.allowed
  last.denied = tally.denied - before.denied
}
const section = (title: string) => {
  closeSection()
  before = { ...tally }
  perSection.push({ title: title.slice(0, title.indexOf('.')), allowed: 0, denied: 0 })
  console.log(`\n== ${title} ==`)
}

console.log('agent-trust demo: zero-trust between agents (the seed scenario)')

section('1. The trust kernel: authority, capability tokens, verifier (one process)')
await runKernelScenario(print)

section('2. Shared state: Redis replay/revocation (skipped when no Redis answers), key rotation')
await runStoresScenario(print)

section('3. Audit trail and human-approved trust changes')
await runAuditScenario(print)

section('4. MCP: the database-reader is a real MCP server (Streamable HTTP on loopback)')
await mcpScenario(print)

section("5. Egress: the summarizer's HTTP tool and agent-to-agent HTTP")
await runEgressScenario(print)

section('6. LangChain: the summarizer is a LangChain agent; its model output carries the injected call')
await runLangchainScenario(print)

section('7. Identity: authority, orchestrator, summarizer and database-reader as separate processes over mTLS')
await runIdentityScenario(print)

closeSection()
console.log(`\nSummary: ${describeTally(tally)} printed above, each decided by agent-trust and recorded in its audit log.`)
console.log(`By section: ${perSection.map((s) => `${s.title}. ${s.allowed} allowed, ${s.denied} denied`).join('; ')}.`)
