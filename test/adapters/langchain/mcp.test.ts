/**
 * The MCP path: tools loaded with @langchain/mcp-adapters from a server guarded by
 * guardMcpServer (agent-trust/mcp), wrapped, called by a real createAgent. Real SDK on both
 * ends, in-memory transport; the wire is observed on the client side.
 */
import { HumanMessage } from '@langchain/core/messages'
import { loadMcpTools } from '@langchain/mcp-adapters'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { createAgent } from 'langchain'
import { afterEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { Authority, MemoryAuditLog, MemoryReplayRevocationStore, TrustLevelDenied, type ManifestInput } from 'agent-trust'
import { CAPABILITY_META_KEY, guardMcpServer } from 'agent-trust/mcp'
import { agentTrustMiddleware, guardMcpClient, guardMcpTools, isGuardedTool } from 'agent-trust/langchain'
import { ctx, JWS_SHAPE, scripted, strings, toolMessages } from '../../support/langchain.js'

const SERVER = 'agent-database-reader'
const TOOLS = [
  { name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' },
  { name: 'write_document', operation: 'write', scope: 'db:write:documents:namespace:{namespace}' },
] as const

const AUTHORITY_MANIFEST: ManifestInput = {
  authority: { id: 'test-authority' },
  agents: [
    // The listing agent: a guarded server's tools/list shows only the tools it may call.
    {
      id: 'agent-orchestrator',
      trustLevel: 'L3',
      grants: ['db:read:documents:namespace:*', 'db:write:documents:namespace:*', 'mcp:*:tools/list'],
      maxDelegationDepth: 1,
    },
    {
      id: 'agent-summarizer-v2',
      trustLevel: 'L2',
      grants: ['db:read:documents:namespace:user-123', 'db:write:documents:namespace:user-123'],
    },
    { id: SERVER, trustLevel: 'L2', tools: [...TOOLS] },
  ],
}

// The server's own policy caps the summarizer at L1 (the lower level wins): writes are the
// server's to refuse, after the authority minted the token.
const SERVER_MANIFEST: ManifestInput = {
  ...AUTHORITY_MANIFEST,
  agents: AUTHORITY_MANIFEST.agents.map((a) => (a.id === 'agent-summarizer-v2' ? { ...a, trustLevel: 'L1' as const } : a)),
}

const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((c) => c.close()))
})

function payloadOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
}

async function world() {
  const authority = await Authority.create({
    manifest: AUTHORITY_MANIFEST,
    store: new MemoryReplayRevocationStore(),
    audit: new MemoryAuditLog(),
  })
  const serverAudit = new MemoryAuditLog()
  const ran: Array<{ tool: string; namespace: string; metaKeys: string[] }> = []
  const server = new McpServer({ name: SERVER, version: '1.0.0' })
  server.registerTool(
    'read_documents',
    { description: 'List the documents of a namespace', inputSchema: { namespace: z.string() } },
    async ({ namespace }, extra) => {
      ran.push({ tool: 'read_documents', namespace, metaKeys: Object.keys(extra._meta ?? {}) })
      return { content: [{ type: 'text', text: `["q3-report.txt","notes.md"] in ${namespace}` }] }
    },
  )
  server.registerTool(
    'write_document',
    { description: 'Write a document', inputSchema: { namespace: z.string(), text: z.string() } },
    async ({ namespace }) => {
      ran.push({ tool: 'write_document', namespace, metaKeys: [] })
      return { content: [{ type: 'text', text: 'written' }] }
    },
  )
  guardMcpServer(server, {
    serverId: SERVER,
    issuers: [authority.trustedIssuer()],
    manifest: SERVER_MANIFEST,
    audit: serverAudit,
    mode: 'enforce',
  })

  const client = await guardMcpClient(new Client({ name: 'langchain-agents', version: '1.0.0' }), {
    authority,
    serverId: SERVER,
    listAs: 'agent-orchestrator',
  })
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
  const sent: JSONRPCMessage[] = []
  const send = clientSide.send.bind(clientSide)
  clientSide.send = (message, options) => {
    sent.push(structuredClone(message))
    return send(message, options)
  }
  await server.connect(serverSide)
  await client.connect(clientSide)
  open.push(client, server)
  const raw = await loadMcpTools('db', client)
  const tools = guardMcpTools(raw, { client })
  const toolCalls = () =>
    sent.filter(
      (m): m is JSONRPCMessage & { method: string; params: { name: string; _meta?: Record<string, unknown> } } =>
        'method' in m && m.method === 'tools/call',
    )
  return { authority, serverAudit, ran, sent, toolCalls, raw, tools, client }
}

const ask = { messages: [new HumanMessage('summarize my documents')] }

describe('MCP tools through @langchain/mcp-adapters', () => {
  it('the wire key is the one agent-trust/mcp reads', () => {
    expect(CAPABILITY_META_KEY).toBe('io.agent-trust/capability')
  })

  it("an allowed call: a fresh token for the context's agent reaches the server, which runs the tool", async () => {
    const w = await world()
    expect(w.tools.map((t) => t.name).sort()).toEqual(['read_documents', 'write_document'])
    expect(w.tools.every(isGuardedTool)).toBe(true)
    // Listing happened as `listAs`.
    const list = w.sent.find((m) => 'method' in m && m.method === 'tools/list') as { params: { _meta: Record<string, string> } }
    expect(payloadOf(list.params._meta[CAPABILITY_META_KEY]!)).toMatchObject({
      sub: 'agent-orchestrator',
      aud: SERVER,
      scope: [`mcp:${SERVER}:tools/list`],
    })

    const agent = createAgent({
      model: scripted([[{ name: 'read_documents', args: { namespace: 'user-123' } }], 'done']),
      tools: w.tools,
      middleware: [agentTrustMiddleware({})],
    })
    const out = await agent.invoke(ask, { context: ctx('agent-summarizer-v2') })
    expect(toolMessages(out.messages)[0]).toMatchObject({ name: 'read_documents', status: 'success' })
    expect(toolMessages(out.messages)[0]!.content).toContain('q3-report.txt')
    const [call] = w.toolCalls()
    const token = call!.params._meta![CAPABILITY_META_KEY] as string
    expect(payloadOf(token)).toMatchObject({
      sub: 'agent-summarizer-v2',
      aud: SERVER,
      scope: ['db:read:documents:namespace:user-123'],
      context: { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' },
    })
    // The server verified it (audited allow with that jti) and stripped it before the tool ran.
    expect(w.serverAudit.events.filter((e) => e.tool !== undefined)).toMatchObject([
      { decision: 'allow', origin: 'agent-summarizer-v2', tool: 'read_documents', jti: payloadOf(token).jti },
    ])
    expect(w.ran).toEqual([{ tool: 'read_documents', namespace: 'user-123', metaKeys: [] }])
    expect(strings(out).some((s) => JWS_SHAPE.test(s))).toBe(false)
  })

  it("the server's verdict reaches the agent as its coded error (fail-closed and soft)", async () => {
    const w = await world()
    const failClosed = createAgent({
      model: scripted([[{ name: 'write_document', args: { namespace: 'user-123', text: 'x' } }], 'never']),
      tools: w.tools,
      middleware: [agentTrustMiddleware({})],
    })
    const err = await failClosed.invoke(ask, { context: ctx('agent-summarizer-v2') }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(TrustLevelDenied)
    expect(err).toMatchObject({ code: 'ERR_TRUST_LEVEL' })
    // The authority minted (its manifest says L2); the server refused (its own says L1).
    expect(w.toolCalls()).toHaveLength(1)
    expect(w.serverAudit.events.filter((e) => e.tool !== undefined)).toMatchObject([
      { decision: 'deny', code: 'ERR_TRUST_LEVEL', tool: 'write_document', capability: ['db:write:documents:namespace:user-123'] },
    ])
    expect(w.ran).toHaveLength(0)

    const soft = createAgent({
      model: scripted([[{ name: 'write_document', args: { namespace: 'user-123', text: 'x' } }], 'ok, I cannot write']),
      tools: w.tools,
      middleware: [agentTrustMiddleware({ onDenied: 'soft' })],
    })
    const out = await soft.invoke(ask, { context: ctx('agent-summarizer-v2') })
    expect(toolMessages(out.messages)[0]!.content).toMatch(/^agent-trust denied this tool call: ERR_TRUST_LEVEL\. /)
    expect(out.messages.at(-1)!.content).toBe('ok, I cannot write')

    // Without the middleware, LangChain's ToolNode still shows the model the coded error's name.
    const plain = createAgent({
      model: scripted([[{ name: 'write_document', args: { namespace: 'user-123', text: 'x' } }], 'x']),
      tools: w.tools,
    })
    const out2 = await plain.invoke(ask, { context: ctx('agent-summarizer-v2') })
    expect(toolMessages(out2.messages)[0]!.content).toMatch(/^TrustLevelDenied: /)
  })

  it('an injected out-of-scope call is refused by the authority: nothing is sent', async () => {
    const w = await world()
    const agent = createAgent({
      model: scripted([[{ name: 'read_documents', args: { namespace: 'user-999' } }], 'x']),
      tools: w.tools,
      middleware: [agentTrustMiddleware({})],
    })
    await expect(agent.invoke(ask, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({ code: 'ERR_SCOPE_DENIED' })
    expect(w.toolCalls()).toHaveLength(0)
  })

  it('no caller, or an unwrapped tool on the prepared client: refused, never sent as the listing agent', async () => {
    const w = await world()
    await expect(
      w.tools[0]!.invoke({ namespace: 'user-123' }, { configurable: { agentTrust: { agentId: 'agent-orchestrator' } } }),
    ).rejects.toMatchObject({ code: 'ERR_TOKEN_MISSING' })
    const rawRead = w.raw.find((t) => t.name === 'read_documents')!
    await expect(rawRead.invoke({ namespace: 'user-123' }, { context: ctx('agent-orchestrator') })).rejects.toThrow(
      /outside a guarded LangChain tool call/,
    )
    expect(w.toolCalls()).toHaveLength(0)
    // The middleware without a verifier refuses tools nobody guards.
    const agent = createAgent({
      model: scripted([[{ name: 'read_documents', args: { namespace: 'user-123' } }], 'x']),
      tools: [rawRead],
      middleware: [agentTrustMiddleware({})],
    })
    await expect(agent.invoke(ask, { context: ctx('agent-orchestrator') })).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' })
    expect(w.toolCalls()).toHaveLength(0)
  })

  it('set-up refusals', async () => {
    const { authority } = await world()
    await expect(guardMcpClient({} as never, { authority, serverId: SERVER, listAs: 'agent-orchestrator' })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
    })
    await expect(guardMcpClient(new Client({ name: 'x', version: '1' }), { authority, serverId: SERVER } as never)).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
    })
    expect(() => guardMcpTools([], { client: new Client({ name: 'x', version: '1' }) })).toThrowError(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
  })
})
