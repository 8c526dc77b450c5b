/**
 * The gateway in front of a server nobody here wrote (`@modelcontextprotocol/server-everything`,
 * started over stdio): only the tools whose definitions were reviewed and pinned are served,
 * and every call needs a capability. The same thing as a command:
 *
 *   agent-trust-mcp-gateway --manifest agent-trust.config.json --server-id everything \
 *     --jwks authority-jwks.json -- npx @modelcontextprotocol/server-everything stdio
 *
 * Prerequisites: `@modelcontextprotocol/server-everything` installed (a dev dependency here).
 * Run: `npx tsx --conditions=agent-trust-source examples/mcp-gateway.ts`
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import { Authority, type ManifestInput } from 'agent-trust'
import { McpGateway, withCapabilities } from 'agent-trust/mcp'

const entry = join(
  dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist',
  'index.js',
)
const upstream = new Client({ name: 'agent-trust-gateway', version: '1.0.0' })
await upstream.connect(new StdioClientTransport({ command: process.execPath, args: [entry, 'stdio'], stderr: 'ignore' }))

// 1. Review: what does the upstream offer, with which hashes? (the command: --print-hashes)
const review = await McpGateway.create({
  upstream,
  serverId: 'everything',
  issuers: [{ issuer: 'agent-trust-authority', jwks: { keys: [] } }],
  manifest: { agents: [{ id: 'everything', trustLevel: 'L2' }] },
})
const echo = review.proposedDeclarations().find((t) => t.name === 'echo')!
console.log('reviewed and pinned:', echo)

// 2. Pin `echo` only, as a read; everything else the upstream offers stays withheld.
const manifest: ManifestInput = {
  agents: [
    { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['mcp:*:tools/list', 'tool:everything:echo'] },
    { id: 'everything', trustLevel: 'L2', tools: [{ ...echo, operation: 'read' }] },
  ],
}
const authority = await Authority.create({ manifest })
const gateway = await McpGateway.create({
  upstream,
  serverId: 'everything',
  issuers: [authority.trustedIssuer()],
  manifest,
  mode: 'enforce',
  onReport: () => undefined,
})

// 3. An agent connects to the gateway (in memory here; stdio or HTTP with the command).
const agent = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
  issuer: authority,
  agentId: 'agent-summarizer-v2',
  serverId: 'everything',
  context: { session_id: 's-1', user_id: 'u-1', task_id: 't-1' },
})
const [a, b] = InMemoryTransport.createLinkedPair()
await gateway.createServer().connect(b)
await agent.connect(a)
console.log(
  'tools served:',
  (await agent.listTools()).tools.map((t) => t.name),
)
console.log((await agent.callTool({ name: 'echo', arguments: { message: 'hello through the gateway' } })).content)
await agent.close()
await gateway.close()
await upstream.close()
