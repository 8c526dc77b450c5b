/**
 * An application on MCP SDK 2.x alone (run with test/support/without-mcp-sdk-v1.mjs): loads
 * `agent-trust/mcp`, guards a 2.x server and calls it with a wrapped 2.x client in memory.
 * Prints one JSON line with what it saw.
 */
import { Client } from '@modelcontextprotocol/client'
import { InMemoryTransport } from '@modelcontextprotocol/server'
import { Authority } from 'agent-trust'
import { capabilityErrorCode, guardMcpServer, withCapabilities } from 'agent-trust/mcp'
import { buildMcpServerV2 } from './mcp-world-v2.js'
import { CONTEXT, MANIFEST, SERVER_ID, textOf } from './mcp-world-data.js'

const authority = await Authority.create({ manifest: MANIFEST })
const server = guardMcpServer(buildMcpServerV2(), { serverId: SERVER_ID, issuers: [authority.trustedIssuer()], manifest: MANIFEST })
const client = withCapabilities(new Client({ name: 'agent-summarizer-v2', version: '1.0.0' }), {
  issuer: authority,
  agentId: 'agent-summarizer-v2',
  serverId: SERVER_ID,
  context: CONTEXT,
})
const raw = new Client({ name: 'raw', version: '1.0.0' })
const [a, b] = InMemoryTransport.createLinkedPair()
await server.connect(b)
await client.connect(a)
const listed = (await client.listTools()).tools.map((t) => t.name).sort()
const called = textOf(await client.callTool({ name: 'echo', arguments: { message: 'alone' } }))
await client.close()
const server2 = guardMcpServer(buildMcpServerV2(), { serverId: SERVER_ID, issuers: [authority.trustedIssuer()], manifest: MANIFEST })
const [c, d] = InMemoryTransport.createLinkedPair()
await server2.connect(d)
await raw.connect(c)
const denied = await raw.callTool({ name: 'echo', arguments: { message: 'x' } }).then(
  () => 'allowed',
  (e: unknown) => capabilityErrorCode(e),
)
await raw.close()
let v1Loadable = true
try {
  await import('@modelcontextprotocol/sdk/types.js')
} catch {
  v1Loadable = false
}
process.stdout.write(JSON.stringify({ listed, called, denied, v1Loadable }) + '\n')
