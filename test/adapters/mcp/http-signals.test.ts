/**
 * The authorization specification's HTTP signals, seen by a plain HTTP client (global fetch,
 * no agent-trust or SDK client code): a guarded server behind serveStreamableHttp answers a
 * denied `tools/call` with 401/403/503, a Bearer challenge naming the RFC 9728 document, and
 * the JSON-RPC error as the body.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryReplayRevocationStore, StoreUnavailable } from 'agent-trust'
import type { ReplayRevocationStore } from 'agent-trust'
import { guardMcpServer, serveStreamableHttp, type StreamableHttpServer } from 'agent-trust/mcp'
import { buildMcpServer, CONTEXT, MANIFEST, SERVER_ID } from '../../support/mcp-world.js'

let authority: Authority
let http: StreamableHttpServer
let jsonHttp: StreamableHttpServer
let outage: StreamableHttpServer

const SCOPES = ['db:read:documents:namespace:{namespace}', 'mcp:agent-database-reader:tools/list']

beforeAll(async () => {
  const store = new MemoryReplayRevocationStore()
  authority = await Authority.create({ manifest: MANIFEST, store })
  const verifier = createVerifier({ id: SERVER_ID, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, mode: 'enforce' })
  const resourceMetadata = {
    authorizationServers: ['https://authority.example'],
    jwksUri: 'https://authority.example/.well-known/jwks.json',
    scopesSupported: SCOPES,
    realm: SERVER_ID,
  }
  http = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(), { verifier, manifest: MANIFEST }), { resourceMetadata })
  jsonHttp = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(), { verifier, manifest: MANIFEST }), {
    resourceMetadata,
    enableJsonResponse: true,
  })
  // A store that cannot answer: every check is ERR_STORE_UNAVAILABLE.
  const broken: ReplayRevocationStore = {
    check: () => Promise.reject(new StoreUnavailable('the store did not answer')),
    revokeToken: () => Promise.resolve(),
    revokeAgent: () => Promise.resolve(),
    close: () => Promise.resolve(),
  }
  const down = createVerifier({ id: SERVER_ID, issuers: [authority.trustedIssuer()], store: broken, manifest: MANIFEST, mode: 'enforce' })
  outage = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(), { verifier: down, manifest: MANIFEST }))
})

afterAll(async () => {
  await Promise.allSettled([http.close(), jsonHttp.close(), outage.close()])
})

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' }

/** initialize + notifications/initialized, as any MCP client does; resolves with the session id. */
async function initialize(url: URL): Promise<string> {
  const res = await fetch(url, {
    method: 'POST',
    headers: HEADERS,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'plain-fetch', version: '1' } },
    }),
  })
  expect(res.status).toBe(200)
  await res.text()
  const sid = res.headers.get('mcp-session-id')
  expect(sid).toBeTruthy()
  const ack = await fetch(url, {
    method: 'POST',
    headers: { ...HEADERS, 'mcp-session-id': sid! },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  })
  expect(ack.status).toBe(202)
  return sid!
}

let nextId = 1
async function call(url: URL, sid: string, method: string, params: unknown, capability?: string): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { ...HEADERS, 'mcp-session-id': sid, ...(capability === undefined ? {} : { 'agent-trust-capability': capability }) },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params }),
  })
}
const readCall = (namespace = 'user-123') => ({ name: 'read_documents', arguments: { namespace } })
const mintRead = (namespace = 'user-123', subject = 'agent-summarizer-v2') =>
  authority.mint({ subject, audience: SERVER_ID, scope: [`db:read:documents:namespace:${namespace}`], operation: 'read', context: CONTEXT })

/** The JSON-RPC error the body carries (the same as on every other transport). */
async function rpcCode(res: Response): Promise<unknown> {
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  const body = (await res.json()) as { jsonrpc: string; error: { code: number; data: { code: string } } }
  expect(body.jsonrpc).toBe('2.0')
  expect(body.error.code).toBe(-32003)
  return body.error.data.code
}

describe.each([
  ['SSE responses', () => http],
  ['JSON responses', () => jsonHttp],
])('authorization signals over Streamable HTTP (%s)', (_name, server) => {
  it('no capability: 401 with a Bearer challenge whose resource_metadata serves the RFC 9728 document', async () => {
    const url = server().url
    const sid = await initialize(url)
    const res = await call(url, sid, 'tools/call', readCall())
    expect(res.status).toBe(401)
    const challenge = res.headers.get('www-authenticate')!
    // RFC 6750 section 3.1: a request without credentials gets no error code.
    expect(challenge).toMatch(/^Bearer /)
    expect(challenge).not.toContain('error=')
    expect(challenge).toContain(`realm="${SERVER_ID}"`)
    expect(await rpcCode(res)).toBe('ERR_TOKEN_MISSING')
    const metadataUrl = /resource_metadata="([^"]+)"/.exec(challenge)![1]!
    expect(metadataUrl).toBe(new URL(`/.well-known/oauth-protected-resource${url.pathname}`, url).href)
    const doc = await fetch(metadataUrl)
    expect(doc.status).toBe(200)
    expect(doc.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await doc.json()).toEqual({
      resource: url.href,
      authorization_servers: ['https://authority.example'],
      jwks_uri: 'https://authority.example/.well-known/jwks.json',
      scopes_supported: SCOPES,
      bearer_methods_supported: ['header'],
      resource_signing_alg_values_supported: ['ES256'],
    })
    // The root form of the well-known URI serves the same document.
    expect((await fetch(new URL('/.well-known/oauth-protected-resource', url))).status).toBe(200)
  })

  it('invalid, replayed and revoked capabilities: 401 invalid_token', async () => {
    const url = server().url
    const sid = await initialize(url)
    const invalid = await call(url, sid, 'tools/call', readCall(), 'not-a-token')
    expect(invalid.status).toBe(401)
    expect(invalid.headers.get('www-authenticate')).toContain('error="invalid_token"')
    expect(invalid.headers.get('www-authenticate')).toContain('resource_metadata="')
    expect(await rpcCode(invalid)).toBe('ERR_TOKEN_MALFORMED')

    const token = await mintRead()
    const ok = await call(url, sid, 'tools/call', readCall(), token)
    expect(ok.status).toBe(200)
    await ok.text()
    const replay = await call(url, sid, 'tools/call', readCall(), token)
    expect(replay.status).toBe(401)
    expect(replay.headers.get('www-authenticate')).toContain('error="invalid_token"')
    expect(await rpcCode(replay)).toBe('ERR_TOKEN_REPLAYED')

    const revoked = await mintRead()
    await authority.revokeToken((JSON.parse(Buffer.from(revoked.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string }).jti)
    const res = await call(url, sid, 'tools/call', readCall(), revoked)
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
    expect(await rpcCode(res)).toBe('ERR_TOKEN_REVOKED')
  })

  it('a valid capability for another scope: 403 insufficient_scope naming the scope the call needs', async () => {
    const url = server().url
    const sid = await initialize(url)
    const other = await authority.mint({
      subject: 'agent-operator',
      audience: SERVER_ID,
      scope: ['db:read:documents:namespace:user-456'],
      operation: 'read',
      context: CONTEXT,
    })
    const res = await call(url, sid, 'tools/call', readCall('user-123'), other)
    expect(res.status).toBe(403)
    const challenge = res.headers.get('www-authenticate')!
    expect(challenge).toContain('error="insufficient_scope"')
    expect(challenge).toContain('scope="db:read:documents:namespace:user-123"')
    expect(challenge).toContain('resource_metadata="')
    expect(await rpcCode(res)).toBe('ERR_SCOPE_DENIED')
  })

  it("tools/list advertises each tool's scope template and operation under _meta", async () => {
    const url = server().url
    const sid = await initialize(url)
    const token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: SERVER_ID,
      scope: [`mcp:${SERVER_ID}:tools/list`],
      operation: 'read',
      context: CONTEXT,
    })
    const res = await call(url, sid, 'tools/list', {}, token)
    expect(res.status).toBe(200)
    const text = await res.text()
    const json = text.trim().startsWith('{') ? text : /^data: (.*)$/m.exec(text)![1]!
    const tools = (JSON.parse(json) as { result: { tools: { name: string; _meta?: Record<string, unknown> }[] } }).result.tools
    const read = tools.find((t) => t.name === 'read_documents')!
    expect(read._meta).toMatchObject({
      'io.agent-trust/scope': 'db:read:documents:namespace:{namespace}',
      'io.agent-trust/operation': 'read',
    })
  })
})

describe('store outage and SDK clients', () => {
  it('the replay/revocation store does not answer: 503 with Retry-After', async () => {
    const url = outage.url
    const sid = await initialize(url)
    const res = await call(url, sid, 'tools/call', readCall(), await mintRead())
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('1')
    expect(res.headers.get('www-authenticate')).toBeNull()
    expect(await rpcCode(res)).toBe('ERR_STORE_UNAVAILABLE')
  })

  it('a capability in params._meta is a JSON-RPC credential: its denial stays a JSON-RPC error on HTTP 200', async () => {
    const url = http.url
    const sid = await initialize(url)
    const res = await call(url, sid, 'tools/call', { ...readCall(), _meta: { 'io.agent-trust/capability': 'not-a-token' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('www-authenticate')).toBeNull()
    expect(await res.text()).toContain('ERR_TOKEN_MALFORMED')
  })

  it('a notification is answered as before (202)', async () => {
    const url = http.url
    const sid = await initialize(url)
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 99 } }),
    })
    expect(res.status).toBe(202)
  })
})

describe('a denial that comes after the transport started its SSE keep-alives', () => {
  it('still gets its status: keep-alive comments before the first event decide nothing', async () => {
    const { createServer } = await import('node:http')
    const { holdForDenial, isSseComment } = await import('../../../adapters/mcp/http-signals.js')
    const { denialAnswer } = await import('agent-trust/http')
    const denial = JSON.stringify({
      jsonrpc: '2.0',
      id: 7,
      error: { code: -32003, message: 'store down', data: { code: 'ERR_STORE_UNAVAILABLE' } },
    })
    const body = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'read_documents' } }
    const server = createServer((_req, res) => {
      const r = holdForDenial(res, body, (code) => denialAnswer(new StoreUnavailable('down'), { body: code }))
      r.writeHead(200, { 'content-type': 'text/event-stream' })
      r.write(': keepalive\n\n')
      r.write(': keepalive\n\n', () => {
        r.write(`event: message\ndata: ${denial}\n\n`)
        r.end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
    try {
      const { port } = server.address() as { port: number }
      const res = await fetch(`http://127.0.0.1:${port}/`)
      expect(res.status).toBe(503)
      expect(res.headers.get('retry-after')).toBe('1')
      expect(JSON.parse(await res.text())).toMatchObject({ id: 7, error: { data: { code: 'ERR_STORE_UNAVAILABLE' } } })
    } finally {
      server.close()
    }
    expect(isSseComment(': keepalive\n\n')).toBe(true)
    expect(isSseComment(Buffer.from(':x\r\n:y\r\n\r\n'))).toBe(true)
    for (const notComment of ['', '\n\n', 'data: {}\n\n', ': k\ndata: {}\n\n', 'event: message\n\n'])
      expect(isSseComment(notComment)).toBe(false)
  })
})
