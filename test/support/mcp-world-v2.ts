/**
 * The database-reader's tools on the MCP TypeScript SDK 2.x (`@modelcontextprotocol/server`):
 * the same tools, answers and token-visibility log as the 1.x world in mcp-world.ts.
 */
import { McpServer, ProtocolError, ProtocolErrorCode, Server } from '@modelcontextprotocol/server'
import type { ServerContext } from '@modelcontextprotocol/server'
import { z } from 'zod'
import { META_KEY, SERVER_ID, type ToolLog } from './mcp-world-data.js'

const DOCS: Record<string, string[]> = { 'user-123': ['q3-report.txt', 'notes.md'], 'user-456': ['salary.xlsx'] }

function sawToken(ctx: ServerContext): boolean {
  const meta = ctx.mcpReq._meta as Record<string, unknown> | undefined
  const inMeta = meta !== undefined && META_KEY in meta
  const req = ctx.http?.req
  if (req === undefined) return inMeta
  // Whatever a handler can make of the request: its headers, a clone, a copy it would forward.
  // (A copy that cannot be made, a used body for one, shows nothing.)
  const has = (r: () => Request): boolean => {
    try {
      return r().headers.has('agent-trust-capability')
    } catch {
      return false
    }
  }
  return inMeta || has(() => req) || has(() => req.clone()) || has(() => new Request(req, { body: null, method: 'GET' }))
}

export interface V2ServerOptions {
  readonly registerTools?: boolean
  readonly instructions?: string
}

/** The 2.x counterpart of `buildCheckedEchoServer` (mcp-world.ts): `echo` runs `check` on the `_meta` token first. */
export function buildCheckedEchoServerV2(check: (token: string) => Promise<void>): McpServer {
  const server = new McpServer({ name: SERVER_ID, version: '1.0.0' })
  server.registerTool(
    'echo',
    { description: 'Echo a message', inputSchema: z.object({ message: z.string() }) },
    async ({ message }, ctx) => {
      await check(String((ctx.mcpReq._meta as Record<string, unknown> | undefined)?.[META_KEY]))
      return { content: [{ type: 'text', text: message }] }
    },
  )
  return server
}

/** The database-reader as a 2.x `McpServer`. */
export function buildMcpServerV2(log: ToolLog = { calls: [] }, options: V2ServerOptions = {}): McpServer {
  const server = new McpServer(
    { name: SERVER_ID, version: '1.0.0' },
    options.instructions === undefined ? {} : { instructions: options.instructions },
  )
  if (options.registerTools !== false) registerDbToolsV2(server, log)
  return server
}

export function registerDbToolsV2(server: McpServer, log: ToolLog): void {
  server.registerTool(
    'read_documents',
    { description: 'List the documents of a namespace', inputSchema: z.object({ namespace: z.string() }) },
    async ({ namespace }, ctx) => {
      log.calls.push({ tool: 'read_documents', args: { namespace }, tokenVisible: sawToken(ctx) })
      return { content: [{ type: 'text', text: JSON.stringify(DOCS[namespace] ?? []) }] }
    },
  )
  server.registerTool(
    'purge_namespace',
    { description: 'Delete every document of a namespace', inputSchema: z.object({ namespace: z.string() }) },
    async ({ namespace }, ctx) => {
      log.calls.push({ tool: 'purge_namespace', args: { namespace }, tokenVisible: sawToken(ctx) })
      return { content: [{ type: 'text', text: `purged ${namespace}` }] }
    },
  )
  server.registerTool(
    'echo',
    { description: 'Echo a message', inputSchema: z.object({ message: z.string() }) },
    async ({ message }, ctx) => {
      log.calls.push({ tool: 'echo', args: { message }, tokenVisible: sawToken(ctx) })
      return { content: [{ type: 'text', text: message }] }
    },
  )
}

/** The same tools on a 2.x low-level `Server` with hand-written handlers. */
export function buildLowLevelServerV2(log: ToolLog = { calls: [] }): Server {
  const server = new Server({ name: SERVER_ID, version: '1.0.0' }, { capabilities: { tools: {} } })
  server.setRequestHandler('tools/list', async () => ({
    tools: ['read_documents', 'purge_namespace', 'echo'].map((name) => ({
      name,
      inputSchema: { type: 'object' as const, properties: {} },
    })),
  }))
  server.setRequestHandler('tools/call', async (request, ctx) => {
    const { name, arguments: args } = request.params
    log.calls.push({ tool: name, args, tokenVisible: sawToken(ctx) })
    if (name === 'read_documents') return { content: [{ type: 'text', text: JSON.stringify(DOCS[String(args?.namespace)] ?? []) }] }
    if (name === 'purge_namespace' || name === 'echo') return { content: [{ type: 'text', text: `${name} ok` }] }
    throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown tool ${name}`)
  })
  return server
}
