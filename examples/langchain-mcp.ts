/**
 * MCP tools in a LangChain agent: loaded with @langchain/mcp-adapters from a server guarded
 * by agent-trust/mcp. Each tools/call carries a fresh token for the agent in the run's
 * context; the server's coded verdict comes back to the agent.
 *
 * Prerequisites: none (in-memory MCP transport). Run: `npx tsx --conditions=agent-trust-source examples/langchain-mcp.ts`
 */
import { AIMessage, HumanMessage } from '@langchain/core/messages'
import { fakeModel } from '@langchain/core/testing'
import { loadMcpTools } from '@langchain/mcp-adapters'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { createAgent } from 'langchain'
import { z } from 'zod'
import { Authority, type ManifestInput } from 'agent-trust'
import { guardMcpServer } from 'agent-trust/mcp'
import { agentTrustContext, agentTrustMiddleware, guardMcpClient, guardMcpTools } from 'agent-trust/langchain'

const manifest: ManifestInput = {
  agents: [
    { id: 'agent-loader', trustLevel: 'L1', grants: ['mcp:*:tools/list', 'db:read:documents:namespace:*'] },
    { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
    {
      id: 'agent-database-reader',
      trustLevel: 'L2',
      tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
    },
  ],
}
const authority = await Authority.create({ manifest })

// The MCP server: an ordinary McpServer, guarded with one call.
const server = new McpServer({ name: 'agent-database-reader', version: '1.0.0' })
server.registerTool(
  'read_documents',
  { description: 'List the documents of a namespace', inputSchema: { namespace: z.string() } },
  async ({ namespace }) => ({
    content: [{ type: 'text', text: `q3-report.txt, notes.md (${namespace})` }],
  }),
)
guardMcpServer(server, {
  serverId: 'agent-database-reader',
  issuers: [authority.trustedIssuer()],
  store: authority.store,
  manifest,
  mode: 'enforce',
})

// The agent side: prepare the client, connect, load, wrap.
const client = await guardMcpClient(new Client({ name: 'agents', version: '1.0.0' }), {
  authority,
  serverId: 'agent-database-reader',
  listAs: 'agent-loader',
})
const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
await server.connect(serverSide)
await client.connect(clientSide)
const tools = guardMcpTools(await loadMcpTools('db', client), { client })

const model = fakeModel()
  .respondWithTools([{ name: 'read_documents', args: { namespace: 'user-123' } }])
  .respondWithTools([{ name: 'read_documents', args: { namespace: 'user-456' } }])
  .respond(new AIMessage('done'))
const agent = createAgent({ model, tools, middleware: [agentTrustMiddleware({ onDenied: 'soft' })] })
const out = await agent.invoke(
  { messages: [new HumanMessage('What documents do I have?')] },
  { context: agentTrustContext({ agentId: 'agent-summarizer-v2', session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }) },
)
for (const m of out.messages)
  if (m.getType() === 'tool') console.log(`${(m as { status?: string }).status}: ${JSON.stringify(m.content).slice(0, 120)}`)
await client.close()
await server.close()
