/**
 * `npm start`: the seed's scenario (shared/seed) end to end, in one process, on in-memory
 * defaults. Prerequisites: `npm install`. No server to start.
 */
import { runKernelScenario } from './kernel-scenario.js'

const print = (line: string) => console.log(line)

console.log('agent-trust demo: zero-trust between agents (seed scenario)\n')
console.log('== 1. The trust kernel: authority, capability tokens, verifier ==')
const { audit } = await runKernelScenario(print)
const denied = audit.events.filter((e) => e.decision === 'deny').length
console.log(`\n${audit.events.length} decisions audited (${denied} denied).`)
