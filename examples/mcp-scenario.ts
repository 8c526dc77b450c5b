/**
 * The MCP part of `npm start`: the database-reader is a real MCP server
 * (Streamable HTTP on loopback), the summarizer calls it through the client wrapper, and
 * the attacks of the kernel demo happen over MCP.
 *
 * Prerequisites: none (in-memory stores, an ephemeral loopback port).
 * Run alone: `npx tsx --conditions=agent-trust-source examples/mcp-scenario.ts`
 */
import { pathToFileURL } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { Authority, createVerifier, MemoryAuditLog, type ManifestInput } from 'agent-trust'
import { capabilityErrorCode, CAPABILITY_META_KEY, guardMcpServer, serveStreamableHttp, withCapabilities } from 'agent-trust/mcp'

const SERVER = 'agent-database-reader'
const context = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }

const manifest: ManifestInput = {
  agents: [
    { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123', 'mcp:*:tools/list'] },
    // A read-only agent whose grants (wrongly) include the purge scope: its level still stops it.
    { id: 'agent-status-reader', trustLevel: 'L1', grants: ['db:read:documents:namespace:*', 'db:admin:purge:namespace:*'] },
    {
      id: SERVER,
      trustLevel: 'L2',
      tools: [
        { name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' },
        { name: 'purge_namespace', operation: 'execute', scope: 'db:admin:purge:namespace:{namespace}' },
      ],
    },
    { id: 'agent-mailer', trustLevel: 'L2' },
  ],
}

const DOCS: Record<string, string[]> = { 'user-123': ['q3-report.txt', 'notes.md'], 'user-456': ['salary.xlsx'] }

/** The database-reader: an ordinary McpServer, guarded with one call. */
function databaseReader(verifier: ReturnType<typeof createVerifier>): McpServer {
  const server = new McpServer({ name: SERVER, version: '1.0.0' })
  server.registerTool(
    'read_documents',
    { description: 'List the documents of a namespace', inputSchema: { namespace: z.string() } },
    async ({ namespace }) => ({
      content: [{ type: 'text', text: (DOCS[namespace] ?? []).join(', ') }],
    }),
  )
  server.registerTool(
    'purge_namespace',
    { description: 'Delete every document of a namespace', inputSchema: { namespace: z.string() } },
    async ({ namespace }) => ({
      content: [{ type: 'text', text: `purged ${namespace}` }],
    }),
  )
  return guardMcpServer(server, { verifier, manifest })
}

export async function mcpScenario(print: (line: string) => void): Promise<void> {
  const audit = new MemoryAuditLog()
  const authority = await Authority.create({ manifest, audit })
  // The server trusts the authority's public keys and shares its revocation store (one process here; Redis across hosts).
  // cryptoOffload: the placement recommended for an HTTP server (README, "Performance").
  const verifier = createVerifier({
    id: SERVER,
    issuers: [authority.trustedIssuer()],
    store: authority.store,
    manifest,
    audit,
    mode: 'enforce',
    cryptoOffload: true,
  })
  const http = await serveStreamableHttp(() => databaseReader(verifier))
  const clients: Client[] = []
  const connect = async <C extends Client>(client: C): Promise<C> => {
    await client.connect(new StreamableHTTPClientTransport(http.url))
    clients.push(client)
    return client
  }
  const outcome = async (label: string, call: () => Promise<unknown>, show: (r: unknown) => string = () => '') => {
    try {
      const r = await call()
      print(`  ALLOWED  ${label}${show(r) === '' ? '' : ` -> ${show(r)}`}`)
    } catch (e) {
      const code = capabilityErrorCode(e)
      print(`  DENIED   ${label}  [${code ?? `unexpected ${(e as Error).message}`}]`)
    }
  }
  const text = (r: unknown) => (r as { content: Array<{ text: string }> }).content[0]?.text ?? ''

  try {
    print(`MCP: ${SERVER} serves Streamable HTTP at ${http.url.href}`)
    const summarizer = await connect(
      withCapabilities(new Client({ name: 'agent-summarizer-v2', version: '1.0.0' }), {
        issuer: authority,
        agentId: 'agent-summarizer-v2',
        serverId: SERVER,
        context,
      }),
    )
    await outcome(
      'summarizer tools/list (filtered to what it may call)',
      () => summarizer.listTools(),
      (r) => (r as { tools: Array<{ name: string }> }).tools.map((t) => t.name).join(', '),
    )
    await outcome(
      'summarizer read_documents(user-123)',
      () => summarizer.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } }),
      text,
    )
    await outcome('summarizer read_documents(user-456) [authority refuses to mint]', () =>
      summarizer.callTool({ name: 'read_documents', arguments: { namespace: 'user-456' } }),
    )

    // A compromised summarizer, speaking raw MCP with the tokens it can get hold of.
    const raw = await connect(new Client({ name: 'compromised-summarizer', version: '1.0.0' }))
    const call = (name: string, namespace: string, token?: string) =>
      raw.callTool({ name, arguments: { namespace }, ...(token === undefined ? {} : { _meta: { [CAPABILITY_META_KEY]: token } }) })
    const minted: string[] = []
    const mint = async (subject: string, scope: string, audience = SERVER) => {
      const token = await authority.mint({ subject, audience, scope: [scope], operation: 'read', context })
      minted.push(token)
      return token
    }

    await outcome('call without a token', () => call('read_documents', 'user-123'))
    const own = await mint('agent-summarizer-v2', 'db:read:documents:namespace:user-123')
    await outcome('user-123 token reused for read_documents(user-456)', () => call('read_documents', 'user-456', own))
    const once = await mint('agent-summarizer-v2', 'db:read:documents:namespace:user-123')
    await outcome('read_documents(user-123) with a fresh token', () => call('read_documents', 'user-123', once), text)
    await outcome('the same token replayed', () => call('read_documents', 'user-123', once))
    const elsewhere = await mint('agent-summarizer-v2', 'db:read:documents:namespace:user-123', 'agent-mailer')
    await outcome('token minted for agent-mailer presented here', () => call('read_documents', 'user-123', elsewhere))
    const l1 = await mint('agent-status-reader', 'db:admin:purge:namespace:user-123')
    await outcome('L1 agent-status-reader purge_namespace(user-123)', () => call('purge_namespace', 'user-123', l1))
    const held = await mint('agent-summarizer-v2', 'db:read:documents:namespace:user-123')
    await authority.revokeAgent('agent-summarizer-v2', { by: 'security-oncall' })
    print('  (agent-summarizer-v2 revoked by security-oncall)')
    await outcome('token minted before the revocation', () => call('read_documents', 'user-123', held))
    await outcome('summarizer read_documents(user-123) after revocation [authority refuses]', () =>
      summarizer.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } }),
    )

    const calls = audit.events.filter((e) => e.action === 'tool_call')
    const trail = JSON.stringify(audit.events)
    const leaked = minted.filter((t) => trail.includes(t)).length
    print(
      `  audit: ${calls.length} tool_call events (${calls.filter((e) => e.decision === 'allow').length} allowed, ${calls.filter((e) => e.decision === 'deny').length} denied); tokens in the trail: ${leaked}`,
    )
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()))
    await http.close()
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await mcpScenario((line) => console.log(line))
}
