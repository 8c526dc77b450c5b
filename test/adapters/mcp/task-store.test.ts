/**
 * The capability never reaches the application's task store. The SDK builds
 * `extra.taskStore` from the original request and `createTask` persists that request's
 * `params`: a durable store would keep a still-valid token. The guard removes the token from
 * the request object itself, so every view the SDK hands on (handler request, `extra._meta`,
 * the task store's copy) is without it.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { InMemoryTaskStore } from '@modelcontextprotocol/sdk/experimental/tasks/stores/in-memory.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js'
import { afterEach, expect, it } from 'vitest'
import { Authority, MemoryReplayRevocationStore } from 'agent-trust'
import { guardMcpServer } from 'agent-trust/mcp'
import { CONTEXT, MANIFEST, META_KEY, SERVER_ID, textOf } from '../../support/mcp-world.js'

/** The application's store: it keeps what the SDK gives it, as a durable store would. */
class RecordingTaskStore extends InMemoryTaskStore {
  readonly persisted: string[] = []
  override async createTask(...args: Parameters<InMemoryTaskStore['createTask']>) {
    this.persisted.push(JSON.stringify(args))
    return super.createTask(...args)
  }
}

const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((c) => c.close()))
})

for (const mode of ['enforce', 'audit', 'off'] as const) {
  it(`keeps the token out of the task store, the handler's request and extra (mode ${mode})`, async () => {
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest: MANIFEST, store })
    const tasks = new RecordingTaskStore()
    const server = new Server(
      { name: SERVER_ID, version: '1.0.0' },
      { capabilities: { tools: {}, tasks: { requests: { tools: { call: {} } } } }, taskStore: tasks },
    )
    const seen: string[] = []
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: [{ name: 'read_documents', inputSchema: { type: 'object' as const } }],
    }))
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      seen.push(JSON.stringify(request), JSON.stringify(extra._meta ?? {}))
      const task = await extra.taskStore?.createTask({ ttl: 60_000 })
      return { content: [{ type: 'text', text: task === undefined ? 'no task store' : 'task created' }] }
    })
    guardMcpServer(server, { serverId: SERVER_ID, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, mode })
    const client = new Client({ name: 'c', version: '1.0.0' })
    const [a, b] = InMemoryTransport.createLinkedPair()
    await server.connect(b)
    await client.connect(a)
    open.push(client, server)

    const { token } = await authority.mintForTool({
      subject: 'agent-summarizer-v2',
      audience: SERVER_ID,
      tool: 'read_documents',
      args: { namespace: 'user-123' },
      context: CONTEXT,
    })
    const result = await client.callTool({
      name: 'read_documents',
      arguments: { namespace: 'user-123' },
      _meta: { [META_KEY]: token, other: 'kept' },
    })
    expect(textOf(result)).toBe('task created')
    expect(tasks.persisted).toHaveLength(1)
    // The attack: what the store persisted, and what the handler saw, would replay the token.
    for (const text of [...tasks.persisted, ...seen]) {
      expect(text).not.toContain(token)
      expect(text).not.toContain(token.split('.')[2] as string)
    }
    // Other `_meta` keys are the application's and stay.
    expect(tasks.persisted[0]).toContain('"other":"kept"')
  })
}
