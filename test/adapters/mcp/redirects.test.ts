/**
 * A capability never follows a redirect to another origin. The SDK transports (1.x from 1.32,
 * 2.x client from 2.3) follow redirects only within the endpoint's origin by default
 * (`redirectPolicy: 'same-origin'`); before those versions fetch followed a 307/308 anywhere,
 * re-posting the body with its `_meta` token. `withCapabilities` refuses a transport built
 * with `redirectPolicy: 'follow'`. The server here answers `initialize` and redirects every
 * other request to a second origin, which must never be reached.
 */
import { createServer, type Server as NodeHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client as ClientV2, StreamableHTTPClientTransport as HttpClientV2 } from '@modelcontextprotocol/client'
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as HttpClientV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Authority, MemoryReplayRevocationStore } from 'agent-trust'
import { withCapabilities } from 'agent-trust/mcp'
import { CONTEXT, MANIFEST, SERVER_ID } from '../../support/mcp-world.js'

let authority: Authority
let front: NodeHttpServer
let elsewhere: NodeHttpServer
let frontUrl: URL
let reached: string[]

const listen = async (s: NodeHttpServer) => {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return (s.address() as AddressInfo).port
}

beforeAll(async () => {
  authority = await Authority.create({ manifest: MANIFEST, store: new MemoryReplayRevocationStore() })
  elsewhere = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      reached.push(body)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  const away = `http://127.0.0.1:${await listen(elsewhere)}/mcp`
  front = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const m = (body === '' ? {} : JSON.parse(body)) as { id?: number; method?: string }
      if (req.method === 'POST' && m.method === 'initialize') {
        const result = { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: SERVER_ID, version: '1' } }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }))
      } else if (req.method === 'POST' && m.id === undefined) res.writeHead(202).end()
      else if (req.method === 'POST') res.writeHead(307, { location: away }).end()
      else res.writeHead(405).end()
    })
  })
  frontUrl = new URL(`http://127.0.0.1:${await listen(front)}/mcp`)
})

beforeEach(() => {
  reached = []
})

afterAll(async () => {
  await Promise.all([new Promise((r) => front.close(r)), new Promise((r) => elsewhere.close(r))])
})

const wrap = <C extends ClientV1 | ClientV2>(client: C): C =>
  withCapabilities(client, { issuer: authority, agentId: 'agent-summarizer-v2', serverId: SERVER_ID, context: CONTEXT })
const readCall = { name: 'read_documents', arguments: { namespace: 'user-123' } }

describe.each([
  ['SDK 1.x', () => wrap(new ClientV1({ name: 'summarizer', version: '1.0.0' })), (url: URL, o = {}) => new HttpClientV1(url, o)],
  ['SDK 2.x', () => wrap(new ClientV2({ name: 'summarizer', version: '1.0.0' })), (url: URL, o = {}) => new HttpClientV2(url, o)],
] as const)('%s: redirects and capabilities', (_sdk, makeClient, makeTransport) => {
  it('the default transport does not carry the call (and its token) to another origin', async () => {
    const client = makeClient()
    await client.connect(makeTransport(frontUrl) as never)
    try {
      await expect(client.callTool(readCall)).rejects.toBeDefined()
      expect(reached).toEqual([])
    } finally {
      await client.close()
    }
  })

  it("redirectPolicy 'follow' is refused before anything is minted or sent", async () => {
    const client = makeClient()
    await client.connect(makeTransport(frontUrl, { redirectPolicy: 'follow' }) as never)
    try {
      await expect(client.callTool(readCall)).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID', details: { rule: 'redirect-policy' } })
      expect(reached).toEqual([])
    } finally {
      await client.close()
    }
  })
})
