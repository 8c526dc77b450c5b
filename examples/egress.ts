/**
 * The smallest egress setup: one agent's dispatcher from its manifest entry, used with
 * undici's fetch. The "public" API is served on loopback: the resolver answers 127.0.0.1
 * and the destination is declared `internal` (a real deployment declares
 * `https://api.example.com` and uses the system resolver).
 *
 * Prerequisites: `npm install`.
 * Run: `npx tsx --conditions=agent-trust-source examples/egress.ts`
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fetch } from 'undici'
import { parseManifest } from 'agent-trust'
import { createEgressAgent } from 'agent-trust/egress'

const server = createServer((_req, res) => res.end('hello from api.example.com'))
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const { port } = server.address() as AddressInfo

const manifest = parseManifest({
  agents: [
    { id: 'agent-summarizer-v2', trustLevel: 'L2', egress: [`http://api.example.com:${port} internal`, 'https://*.docs.example.org'] },
  ],
})
const me = manifest.agents[0]!

const dispatcher = createEgressAgent({
  agentId: me.id,
  trustLevel: me.trustLevel,
  egress: me.egress,
  resolver: async () => [{ address: '127.0.0.1' }],
  mode: 'enforce',
})

const ok = await fetch(`http://api.example.com:${port}/status`, { dispatcher })
console.log('allowed', ok.status, await ok.text())

try {
  await fetch('https://external-api.com/upload', { dispatcher, method: 'POST', body: 'documents' })
} catch (e) {
  // fetch wraps dispatcher errors: the coded EgressDenied is the cause.
  const err = (e as { cause?: { code?: string; details?: { host?: string; rule?: string } } }).cause
  console.log('denied', err?.code, err?.details?.host, err?.details?.rule)
}

await dispatcher.close()
server.close()
