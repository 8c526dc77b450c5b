/**
 * `agent-trust/mcp` in twenty lines: guard an McpServer, serve it over Streamable HTTP,
 * call it with a client that carries a fresh capability per call.
 *
 * Prerequisites: none. Run: `npx tsx --conditions=agent-trust-source examples/mcp-server.ts`
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { Authority, createVerifier, type ManifestInput } from 'agent-trust'
import { capabilityErrorCode, guardMcpServer, serveStreamableHttp, withCapabilities } from 'agent-trust/mcp'

const manifest: ManifestInput = {
  agents: [
    { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123', 'mcp:*:tools/list'] },
    {
      id: 'agent-database-reader',
      trustLevel: 'L2',
      tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
    },
  ],
}
const authority = await Authority.create({ manifest }) // normally its own service; here in-process

// Server side: the tool is ordinary SDK code; one call turns the checks on.
// cryptoOffload: an HTTP server under load checks signatures on another core (README, "Performance").
const verifier = createVerifier({
  id: 'agent-database-reader',
  issuers: [authority.trustedIssuer()],
  store: authority.store,
  manifest,
  mode: 'enforce',
  cryptoOffload: true,
})
const http = await serveStreamableHttp(() => {
  const server = new McpServer({ name: 'agent-database-reader', version: '1.0.0' })
  server.registerTool('read_documents', { inputSchema: { namespace: z.string() } }, async ({ namespace }) => ({
    content: [{ type: 'text', text: `documents of ${namespace}` }],
  }))
  return guardMcpServer(server, { verifier, manifest })
})

// Client side: every request asks the authority for a token for exactly that call.
const client = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
  issuer: authority,
  agentId: 'agent-summarizer-v2',
  serverId: 'agent-database-reader',
  context: { session_id: 's-1', user_id: 'user-123', task_id: 't-1' },
})
await client.connect(new StreamableHTTPClientTransport(http.url))
console.log((await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })).content)
await client
  .callTool({ name: 'read_documents', arguments: { namespace: 'user-456' } })
  .catch((e: unknown) => console.log('denied:', capabilityErrorCode(e)))
await client.close()
await http.close()
