/**
 * Scope step-up over Streamable HTTP (MCP authorization: 403 `insufficient_scope`): an SDK
 * client whose capability lacks the scope the guarded server needs gets the challenge, obtains
 * a token for the challenged scope from its authority and resends once (`capabilityFetch`).
 * The server's manifest declares `echo` with a per-argument scope the authority's manifest
 * does not know, so the authority first mints `tool:<server>:echo` and the server asks for
 * `db:read:documents:namespace:<message>`.
 */
import { createServer, type Server as NodeHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client as ClientV2, InsufficientScopeError, StreamableHTTPClientTransport as HttpClientV2 } from '@modelcontextprotocol/client'
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as HttpClientV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryAuditLog, MemoryReplayRevocationStore, type ManifestInput } from 'agent-trust'
import { capabilityErrorCode, capabilityFetch, challengedScopes, guardMcpServer, serveStreamableHttp } from 'agent-trust/mcp'
import type { StreamableHttpServer } from 'agent-trust/mcp'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../../support/options.js'
import { buildMcpServer, CONTEXT, MANIFEST, SERVER_ID, textOf, type ToolLog } from '../../support/mcp-world.js'
import { buildMcpServerV2 } from '../../support/mcp-world-v2.js'

const AGENT = 'agent-summarizer-v2'
/** The server's newer declaration: `echo` needs the read scope of the namespace named by `message`. */
const SERVER_MANIFEST: ManifestInput = {
  ...MANIFEST,
  agents: MANIFEST.agents.map((a) =>
    a.id === SERVER_ID
      ? { ...a, tools: [...(a.tools ?? []), { name: 'echo', operation: 'read', scope: 'db:read:documents:namespace:{message}' }] }
      : a,
  ),
}

let authority: Authority
let audit: MemoryAuditLog
let log: ToolLog
let v1Http: StreamableHttpServer
let v2Http: StreamableHttpServer
const open: Array<{ close(): Promise<unknown> }> = []

beforeAll(async () => {
  const store = new MemoryReplayRevocationStore()
  authority = await Authority.create({ manifest: MANIFEST, store })
  audit = new MemoryAuditLog()
  const verifier = createVerifier({
    id: SERVER_ID,
    issuers: [authority.trustedIssuer()],
    store,
    manifest: SERVER_MANIFEST,
    mode: 'enforce',
    audit,
  })
  const resourceMetadata = { authorizationServers: ['https://authority.example'], realm: SERVER_ID }
  v1Http = await serveStreamableHttp(() => guardMcpServer(buildMcpServer(log), { verifier, manifest: SERVER_MANIFEST }), {
    resourceMetadata,
  })
  v2Http = await serveStreamableHttp(() => guardMcpServer(buildMcpServerV2(log), { verifier, manifest: SERVER_MANIFEST }), {
    resourceMetadata,
  })
})

beforeEach(() => {
  log = { calls: [] }
  audit.events.length = 0
})

afterAll(async () => {
  for (const c of open.reverse()) await c.close().catch(() => undefined)
  await Promise.allSettled([v1Http.close(), v2Http.close()])
})

const stepUp = () => capabilityFetch({ issuer: authority, agentId: AGENT, serverId: SERVER_ID, context: CONTEXT })
/** A fresh header capability per request, as capabilityFetch mints it, but no step-up. */
const headerOnly = (): typeof fetch => async (input, init) => {
  const body =
    typeof init?.body === 'string'
      ? (JSON.parse(init.body) as { method?: string; params?: { name?: string; arguments?: Record<string, unknown> } })
      : {}
  const headers = new Headers(init?.headers)
  if (body.method === 'tools/call') {
    const r = await authority.mintForTool({
      subject: AGENT,
      audience: SERVER_ID,
      tool: String(body.params?.name),
      args: body.params?.arguments,
      context: CONTEXT,
    })
    headers.set('agent-trust-capability', r.token)
  }
  return fetch(input, { ...init, headers })
}
const echoCall = (message: string) => ({ name: 'echo', arguments: { message } })
const decisions = () =>
  audit.events.filter((e) => e.action === 'tool_call').map((e) => [e.decision, e.code ?? null, e.capability?.[0] ?? null])

async function v2Client(fetchFn: typeof fetch): Promise<ClientV2> {
  const client = new ClientV2({ name: AGENT, version: '1.0.0' })
  await client.connect(new HttpClientV2(v2Http.url, { fetch: fetchFn }))
  open.push(client)
  return client
}

describe('capabilityFetch', () => {
  it('validates its options', async () => {
    const base = { issuer: authority, agentId: AGENT, serverId: SERVER_ID, context: CONTEXT }
    await expectOptionMisuse(() => capabilityFetch(undefined as never), { path: 'issuer' })
    await expectOptionMisuse(() => capabilityFetch({ ...base, issuer: { mint() {} } as never }), { path: 'issuer' })
    await expectOptionMisuse(() => capabilityFetch({ ...base, agentId: '' }), { path: 'agentId' })
    await expectOptionMisuse(() => capabilityFetch({ ...base, serverId: 1 as never }), { path: 'serverId' })
    await expectOptionMisuse(() => capabilityFetch({ ...base, context: 'ctx' as never }), { path: 'context' })
    await expectOptionMisuse(() => capabilityFetch({ ...base, fetch: 'fetch' as never }), { path: 'fetch' })
    await expectOptionMisuse(() => capabilityFetch({ ...base, ttlSeconds: 0 }), { path: 'ttlSeconds' })
    await expectOptionMisuse(() => capabilityFetch({ ...base, requireAdvertisedAudience: true } as never), {
      path: 'requireAdvertisedAudience',
    })
    await expectOptionMisuse(() => capabilityFetch({ ...base, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
    expect(capabilityFetch(base)).toBeTypeOf('function')
  })
})

describe('SDK 2.x client, guarded server behind serveStreamableHttp', () => {
  it('without step-up the SDK surfaces the challenge: InsufficientScopeError with the scope and the RFC 9728 document', async () => {
    const client = await v2Client(headerOnly())
    const error = await client.callTool(echoCall('user-123')).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(InsufficientScopeError)
    expect((error as InsufficientScopeError).requiredScope).toBe('db:read:documents:namespace:user-123')
    expect((error as InsufficientScopeError).resourceMetadataUrl?.pathname).toBe('/.well-known/oauth-protected-resource/mcp')
    expect(log.calls).toHaveLength(0)
  })

  it('capabilityFetch steps up: a token for the challenged scope, the request resent once, the tool runs once', async () => {
    const client = await v2Client(stepUp())
    expect(textOf(await client.callTool(echoCall('user-123')))).toBe('user-123')
    expect(log.calls).toHaveLength(1)
    expect(log.calls[0]!.tokenVisible).toBe(false)
    expect(decisions()).toEqual([
      ['deny', 'ERR_SCOPE_DENIED', 'db:read:documents:namespace:user-123'],
      ['allow', null, 'db:read:documents:namespace:user-123'],
    ])
  })

  it('a challenged scope the agent is not granted: the authority refuses, nothing is resent, the tool never runs', async () => {
    const client = await v2Client(stepUp())
    const error = await client.callTool(echoCall('user-456')).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(capabilityErrorCode(error)).toBe('ERR_SCOPE_DENIED')
    expect(log.calls).toHaveLength(0)
    // One request reached the server (the first token); the step-up was refused before sending.
    expect(decisions()).toEqual([['deny', 'ERR_SCOPE_DENIED', 'db:read:documents:namespace:user-456']])
  })
})

describe('SDK 1.x client, the same fetch', () => {
  it('steps up the same way', async () => {
    const client = new ClientV1({ name: AGENT, version: '1.0.0' })
    await client.connect(new HttpClientV1(v1Http.url, { fetch: stepUp() }))
    open.push(client)
    expect(textOf(await client.callTool(echoCall('user-123')))).toBe('user-123')
    expect(log.calls).toHaveLength(1)
    expect(decisions().map((d) => d[0])).toEqual(['deny', 'allow'])
  })
})

describe('capabilityFetch on its own', () => {
  let hits: Array<string | undefined>
  let raw: NodeHttpServer
  let rawUrl: URL
  beforeAll(async () => {
    // A server that challenges every request: the step-up happens once, never in a loop.
    raw = createServer((req, res) => {
      hits.push(req.headers['agent-trust-capability'] as string | undefined)
      res
        .writeHead(403, { 'www-authenticate': 'Bearer error="insufficient_scope", scope="db:read:documents:namespace:user-123"' })
        .end('{}')
    })
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r))
    rawUrl = new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}/mcp`)
  })
  beforeEach(() => {
    hits = []
  })
  afterAll(() => new Promise<void>((r) => raw.close(() => r())))

  const post = (f: typeof fetch, url: URL, body: unknown) =>
    f(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: echoCall('user-123') }

  it('resends at most once, with a new token, and returns the second answer', async () => {
    const res = await post(stepUp(), rawUrl, call)
    expect(res.status).toBe(403)
    expect(hits).toHaveLength(2)
    expect(hits[0]).toBeTruthy()
    expect(hits[1]).toBeTruthy()
    expect(hits[1]).not.toBe(hits[0])
  })

  it('is bound to its first endpoint: another URL is refused before anything is minted or sent', async () => {
    const f = stepUp()
    await post(f, rawUrl, call)
    hits = []
    const other = new URL('/other', rawUrl)
    await expect(post(f, other, call)).rejects.toMatchObject({ code: 'ERR_TOKEN_AUDIENCE' })
    expect(hits).toHaveLength(0)
  })

  it('a redirect is not followed with the token: the other origin receives nothing', async () => {
    let elsewhere = 0
    const other = createServer((_req, res) => {
      elsewhere++
      res.writeHead(200).end('{}')
    })
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
    const redirecting = createServer((_req, res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${(other.address() as AddressInfo).port}/mcp` }).end()
    })
    await new Promise<void>((r) => redirecting.listen(0, '127.0.0.1', r))
    try {
      const res = await post(stepUp(), new URL(`http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/mcp`), call)
      expect(res.status).toBe(307)
      expect(elsewhere).toBe(0)
    } finally {
      await Promise.all([new Promise((r) => other.close(r)), new Promise((r) => redirecting.close(r))])
    }
  })

  it('initialize, notifications and non-POST requests pass untouched', async () => {
    await post(stepUp(), rawUrl, { jsonrpc: '2.0', id: 0, method: 'initialize', params: {} })
    await post(stepUp(), rawUrl, { jsonrpc: '2.0', method: 'notifications/initialized' })
    await stepUp()(rawUrl, { method: 'GET' })
    expect(hits).toEqual([undefined, undefined, undefined])
  })
})

describe('challengedScopes', () => {
  const answer = (status: number, challenge?: string) =>
    new Response(null, { status, headers: challenge === undefined ? {} : { 'www-authenticate': challenge } })
  it('reads the space-delimited scope of a 403 insufficient_scope Bearer challenge', () => {
    expect(
      challengedScopes(answer(403, 'Bearer realm="srv", error="insufficient_scope", scope="a:b c:d", resource_metadata="https://x/y"')),
    ).toEqual(['a:b', 'c:d'])
    expect(challengedScopes(answer(403, 'bearer error=insufficient_scope, scope="a\\"b"'))).toEqual(['a"b'])
  })
  it('anything else is not a step-up', () => {
    expect(challengedScopes(answer(401, 'Bearer error="insufficient_scope", scope="a"'))).toBeUndefined()
    expect(challengedScopes(answer(403, 'Bearer error="invalid_token", scope="a"'))).toBeUndefined()
    expect(challengedScopes(answer(403, 'DPoP error="insufficient_scope", scope="a"'))).toBeUndefined()
    expect(challengedScopes(answer(403, 'Bearer error="insufficient_scope"'))).toBeUndefined()
    expect(challengedScopes(answer(403, 'Bearer error="insufficient_scope", xscope="a"'))).toBeUndefined()
    expect(
      challengedScopes(
        answer(403, `Bearer error="insufficient_scope", scope="${Array.from({ length: 17 }, (_, i) => `s${i}`).join(' ')}"`),
      ),
    ).toBeUndefined()
    expect(challengedScopes(answer(403))).toBeUndefined()
  })
})
