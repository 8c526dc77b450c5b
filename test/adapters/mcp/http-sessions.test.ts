/**
 * No lock-out on the Streamable HTTP host: `initialize` needs no token, so sessions that have
 * not carried a valid capability are capped per peer, expire when idle, give way to new ones,
 * and answer only the peer that opened them. Real node:http host, real SDK client and
 * transports, real undici for the flood.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Pool, request } from 'undici'
import { Authority, createVerifier, MemoryReplayRevocationStore, type Verifier } from 'agent-trust'
import { guardMcpServer, serveStreamableHttp, withCapabilities, type StreamableHttpServer } from 'agent-trust/mcp'
import { buildMcpServer, CONTEXT, MANIFEST, SERVER_ID, textOf } from '../../support/mcp-world.js'

let authority: Authority
let verifier: Verifier
const open: Array<{ close(): Promise<void> }> = []

beforeAll(async () => {
  const store = new MemoryReplayRevocationStore()
  authority = await Authority.create({ manifest: MANIFEST, store })
  verifier = createVerifier({ id: SERVER_ID, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, mode: 'enforce' })
})

afterAll(async () => {
  await Promise.allSettled(open.map((o) => o.close()))
})

async function host(options: Parameters<typeof serveStreamableHttp>[1] = {}): Promise<StreamableHttpServer> {
  const h = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(), { verifier, manifest: MANIFEST }), options)
  open.push(h)
  return h
}

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'flood', version: '1' } },
})
const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

/** `n` token-less initializes, `concurrency` at a time, from `localAddress`. */
async function flood(h: StreamableHttpServer, n: number, localAddress = '127.0.0.1'): Promise<string[]> {
  const pool = new Pool(h.url.origin, { connections: 16, localAddress })
  const ids: string[] = []
  let next = 0
  const worker = async () => {
    while (next < n) {
      next++
      const r = await pool.request({ path: h.url.pathname, method: 'POST', headers: HEADERS, body: INITIALIZE })
      await r.body.dump()
      const sid = r.headers['mcp-session-id']
      if (typeof sid === 'string') ids.push(sid)
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
  await pool.close()
  return ids
}

async function agent(h: StreamableHttpServer): Promise<Client> {
  const client = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
    issuer: authority,
    agentId: 'agent-summarizer-v2',
    serverId: SERVER_ID,
    context: CONTEXT,
  })
  await client.connect(new StreamableHTTPClientTransport(h.url))
  open.push(client)
  return client
}

const readDocs = (c: Client) => c.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })

describe('token-less sessions cannot lock agents out', () => {
  it('10k token-less initializes, then a legitimate agent: every call succeeds', { timeout: 300_000 }, async () => {
    const h = await host()
    const ids = await flood(h, 10_000)
    expect(ids.length).toBe(10_000)
    // Capped per peer: the flood holds at most its share, however many it opened.
    expect(h.sessions).toBeLessThanOrEqual(16)
    const client = await agent(h)
    for (let i = 0; i < 5; i++) expect(JSON.parse(textOf(await readDocs(client)))).toEqual(['q3-report.txt', 'notes.md'])
    expect((await client.listTools()).tools.length).toBeGreaterThan(0)
    // A session that carried a valid capability is never pushed out by token-less ones.
    await flood(h, 200)
    expect(JSON.parse(textOf(await readDocs(client)))).toEqual(['q3-report.txt', 'notes.md'])
  })

  it('when the host is full, the oldest token-less session makes room; 503 only when all carried a capability', async () => {
    const h = await host({ maxSessions: 3, maxTokenlessSessionsPerPeer: 100 })
    const a = await agent(h)
    await readDocs(a) // proven
    await flood(h, 50)
    expect(h.sessions).toBe(3)
    const b = await agent(h)
    await readDocs(b)
    const c = await agent(h)
    await readDocs(c)
    expect(h.sessions).toBe(3)
    // Every session carried a capability: a newcomer gets 503, nobody is pushed out.
    const r = await request(h.url, { method: 'POST', headers: HEADERS, body: INITIALIZE })
    await r.body.dump()
    expect(r.statusCode).toBe(503)
    for (const x of [a, b, c]) await readDocs(x)
  })

  it('a token-less session ends when idle (configurable)', async () => {
    const h = await host({ tokenlessIdleMs: 200 })
    await flood(h, 3)
    expect(h.sessions).toBe(3)
    await expect.poll(() => h.sessions, { timeout: 10_000, interval: 50 }).toBe(0)
  })

  it('a session id from another peer address can neither use, read nor end the session', async () => {
    const h = await host()
    const [sid] = await flood(h, 1, '127.0.0.1')
    const other = new Pool(h.url.origin, { localAddress: '127.0.0.2' })
    for (const method of ['GET', 'DELETE', 'POST'] as const) {
      const r = await other.request({
        path: h.url.pathname,
        method,
        headers: { ...HEADERS, 'mcp-session-id': sid as string, 'mcp-protocol-version': '2025-06-18' },
        ...(method === 'POST' ? { body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) } : {}),
      })
      await r.body.dump()
      expect(r.statusCode).toBe(404)
    }
    await other.close()
    expect(h.sessions).toBe(1)
  })
})
