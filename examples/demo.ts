/**
 * `npm start`: the seed's scenario (shared/seed) end to end, on in-memory defaults.
 * Prerequisites: `npm install`. No server to start: every server below listens on loopback
 * and every process is started and stopped by this script.
 */
import { runEgressScenario } from './egress-scenario.js'
import { runIdentityScenario } from './identity-scenario.js'
import { runKernelScenario } from './kernel-scenario.js'
import { runLangchainScenario } from './langchain-scenario.js'
import { mcpScenario } from './mcp-scenario.js'

const print = (line: string) => console.log(line)
const section = (title: string) => console.log(`\n== ${title} ==`)

console.log('agent-trust demo: zero-trust between agents (the seed scenario)')

section('1. The trust kernel: authority, capability tokens, verifier (one process)')
await runKernelScenario(print)

section('2. MCP: the database-reader is a real MCP server (Streamable HTTP on loopback)')
await mcpScenario(print)

section('3. Egress: the summarizer\'s HTTP tool and agent-to-agent HTTP')
await runEgressScenario(print)

section('4. LangChain: the summarizer is a LangChain agent; its model output carries the injected call')
await runLangchainScenario(print)

section('5. Identity: authority, orchestrator, summarizer and database-reader as separate processes over mTLS')
await runIdentityScenario(print)

console.log('\nEvery attempt above was decided by agent-trust and recorded in its audit log.')
