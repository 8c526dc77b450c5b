/**
 * A guarded server over Streamable HTTP on loopback (real node:http server, the SDK's
 * StreamableHTTPServerTransport and StreamableHTTPClientTransport).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryAuditLog, MemoryReplayRevocationStore } from 'agent-trust'
import {
  CAPABILITY_DENIED,
  guardMcpServer,
  serveStreamableHttp,
  withCapabilities,
  type HttpMiddleware,
  type StreamableHttpServer,
} from 'agent-trust/mcp'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../../support/options.js'
import { buildMcpServer, CONTEXT, MANIFEST, META_KEY, SERVER_ID, textOf, type ToolLog } from '../../support/mcp-world.js'

let authority: Authority
let http: StreamableHttpServer
let oauthHttp: StreamableHttpServer
const log: ToolLog = { calls: [] }
const audit = new MemoryAuditLog()
const clients: Client[] = []

beforeAll(async () => {
  const store = new MemoryReplayRevocationStore()
  authority = await Authority.create({ manifest: MANIFEST, store })
  // One verifier for every session, so replay and revocation state is shared.
  const verifier = createVerifier({
    id: SERVER_ID,
    issuers: [authority.trustedIssuer()],
    store,
    manifest: MANIFEST,
    audit,
    mode: 'enforce',
  })
  http = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(log), { verifier, manifest: MANIFEST }))
  // The server's own OAuth in Authorization (the SDK's requireBearerAuth), capabilities in _meta.
  const oauth = requireBearerAuth({
    verifier: {
      verifyAccessToken: async (token: string) => {
        if (token !== 'oauth-access-token')
          throw new (await import('@modelcontextprotocol/sdk/server/auth/errors.js')).InvalidTokenError('bad token')
        return { token, clientId: 'desktop-app', scopes: [], expiresAt: Math.floor(Date.now() / 1000) + 3600 }
      },
    },
  }) as unknown as HttpMiddleware
  oauthHttp = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(log), { verifier, manifest: MANIFEST }), { middleware: oauth })
})

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()))
  await http.close()
  await oauthHttp.close()
})

async function connect(client: Client, url = http.url, init?: RequestInit, fetchImpl?: typeof fetch): Promise<Client> {
  await client.connect(
    new StreamableHTTPClientTransport(url, { requestInit: init, ...(fetchImpl === undefined ? {} : { fetch: fetchImpl }) }),
  )
  clients.push(client)
  return client
}

const raw = () => new Client({ name: 'raw', version: '1.0.0' })
const mintRead = (namespace = 'user-123') =>
  authority.mint({
    subject: 'agent-summarizer-v2',
    audience: SERVER_ID,
    scope: [`db:read:documents:namespace:${namespace}`],
    operation: 'read',
    context: CONTEXT,
  })
const read = (client: Client, token?: string, namespace = 'user-123') =>
  client.callTool({ name: 'read_documents', arguments: { namespace }, ...(token === undefined ? {} : { _meta: { [META_KEY]: token } }) })
const denied = (code: string) => ({ code: CAPABILITY_DENIED, data: { code } })
/** Without a capability in _meta the host answers with the HTTP status (the SDK client's StreamableHTTPError); the body still names the code. */
const challenged = (status: number, code: string) => ({ code: status, message: expect.stringContaining(code) as unknown })

describe('guarded server over Streamable HTTP', () => {
  it('the wrapped client gets its documents; the tool never sees the token', async () => {
    const client = await connect(
      withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
        issuer: authority,
        agentId: 'agent-summarizer-v2',
        serverId: SERVER_ID,
        context: CONTEXT,
      }),
    )
    expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(['echo', 'read_documents'])
    const before = log.calls.length
    expect(JSON.parse(textOf(await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })))).toEqual([
      'q3-report.txt',
      'notes.md',
    ])
    expect(log.calls.slice(before)).toEqual([{ tool: 'read_documents', args: { namespace: 'user-123' }, tokenVisible: false }])
  })

  it('attacks: no token, another server, other arguments, replay', async () => {
    const client = await connect(raw())
    await expect(read(client)).rejects.toMatchObject(challenged(401, 'ERR_TOKEN_MISSING'))
    const other = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-other-server',
      scope: ['tool:agent-other-server:echo'],
      operation: 'execute',
      context: CONTEXT,
    })
    await expect(read(client, other)).rejects.toMatchObject(denied('ERR_TOKEN_AUDIENCE'))
    await expect(read(client, await mintRead('user-123'), 'user-456')).rejects.toMatchObject(denied('ERR_SCOPE_DENIED'))
    const token = await mintRead()
    await read(client, token)
    await expect(read(client, token)).rejects.toMatchObject(denied('ERR_TOKEN_REPLAYED'))
  })

  it('attack: a replay on another session of the same server is still a replay', async () => {
    const a = await connect(raw())
    const b = await connect(raw())
    const token = await mintRead()
    await read(a, token)
    await expect(read(b, token)).rejects.toMatchObject(denied('ERR_TOKEN_REPLAYED'))
  })

  it('accepts the token in the Agent-Trust-Capability header, and strips it before the tool', async () => {
    let next: string | undefined
    const withHeader: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers)
      if (next !== undefined) headers.set('agent-trust-capability', next)
      next = undefined
      return fetch(input, { ...init, headers })
    }
    const client = await connect(raw(), http.url, undefined, withHeader)
    next = await mintRead()
    const before = log.calls.length
    await read(client)
    expect(log.calls.slice(before)).toEqual([{ tool: 'read_documents', args: { namespace: 'user-123' }, tokenVisible: false }])
  })

  it('a static header is reused on every request: the second call is a replay', async () => {
    const token = await mintRead()
    const stuck = await connect(raw(), http.url, { headers: { 'agent-trust-capability': token } })
    await read(stuck)
    await expect(read(stuck)).rejects.toMatchObject(challenged(401, 'ERR_TOKEN_REPLAYED'))
  })

  it("never reads a capability from Authorization (it belongs to the server's OAuth)", async () => {
    const client = await connect(raw(), http.url, { headers: { authorization: `Bearer ${await mintRead()}` } })
    await expect(read(client)).rejects.toMatchObject(challenged(401, 'ERR_TOKEN_MISSING'))
  })

  it("composes with the SDK's requireBearerAuth: OAuth in Authorization AND a capability in _meta", async () => {
    await expect(connect(raw(), oauthHttp.url)).rejects.toThrow()
    const client = await connect(raw(), oauthHttp.url, { headers: { authorization: 'Bearer oauth-access-token' } })
    await expect(read(client)).rejects.toMatchObject(challenged(401, 'ERR_TOKEN_MISSING'))
    expect(JSON.parse(textOf(await read(client, await mintRead())))).toHaveLength(2)
  })

  it('attack: a revoked agent over HTTP (token minted before the revocation)', async () => {
    const client = await connect(raw())
    const token = await authority.mint({
      subject: 'agent-operator',
      audience: SERVER_ID,
      scope: ['db:read:documents:namespace:user-456'],
      operation: 'read',
      context: CONTEXT,
    })
    await authority.revokeAgent('agent-operator')
    await expect(read(client, token, 'user-456')).rejects.toMatchObject(denied('ERR_AGENT_REVOKED'))
    expect(audit.events.at(-1)).toMatchObject({
      decision: 'deny',
      code: 'ERR_AGENT_REVOKED',
      destination: SERVER_ID,
      tool: 'read_documents',
    })
  })

  it('the HTTP host answers only its path, known sessions and its own Host (DNS rebinding)', async () => {
    const base = http.url
    expect((await fetch(new URL('/other', base), { method: 'POST' })).status).toBe(404)
    const unknown = await fetch(base, {
      method: 'POST',
      headers: { 'mcp-session-id': 'no-such-session', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{}',
    })
    expect(unknown.status).toBe(404)
    expect((await fetch(base, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'not json' })).status).toBe(400)
    const init = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    })
    const { request } = await import('node:http')
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        base,
        {
          method: 'POST',
          headers: { host: 'evil.example:80', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      req.end(init)
    })
    expect(status).toBe(403)
  })
})

describe('serveStreamableHttp options', () => {
  it('validates its options before listening', async () => {
    const make = () => buildMcpServer({ calls: [] } as never)
    await expectOptionMisuse(() => serveStreamableHttp('server' as never), { path: 'createServer' })
    await expectOptionMisuse(() => serveStreamableHttp(make, { path: 'mcp' }), { path: 'options.path' })
    await expectOptionMisuse(() => serveStreamableHttp(make, { maxSessions: 0 }), { path: 'options.maxSessions' })
    await expectOptionMisuse(() => serveStreamableHttp(make, { port: '80' as never }), { path: 'options.port' })
    await expectOptionMisuse(() => serveStreamableHttp(make, { tls: { credentials: { cert: 'x', key: 'tls-private-secret', ca: 'y' } } }), {
      path: 'options.tls.credentials.key',
      secrets: ['tls-private-secret'],
    })
    await expectOptionMisuse(() => serveStreamableHttp(make, { resourceMetadata: { realms: 'x' } as never }), {
      path: 'options.resourceMetadata.realms',
    })
    await expectOptionMisuse(() => serveStreamableHttp(make, { maxSesions: 5 } as never), { path: 'options.maxSesions' })
    await expectOptionMisuse(() => serveStreamableHttp(make, { [HOSTILE_KEY]: 1 } as never), { path: `options${HOSTILE_KEY_PATH}` })
  })
})

describe("withCapabilities and the SDK's redirectPolicy", () => {
  it("refuses a transport built with redirectPolicy 'follow': nothing is minted or sent", async () => {
    const client = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
      issuer: authority,
      agentId: 'agent-summarizer-v2',
      serverId: SERVER_ID,
      context: CONTEXT,
    })
    await client.connect(new StreamableHTTPClientTransport(http.url, { redirectPolicy: 'follow' }))
    clients.push(client)
    const before = log.calls.length
    await expect(client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      details: { rule: 'redirect-policy' },
    })
    expect(log.calls.length).toBe(before)
  })
})
