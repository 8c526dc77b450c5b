/**
 * Agent-to-agent HTTP with real parts: the kernel authority mints, real undici carries,
 * a real node:http server verifies with the kernel verifier. The token must reach only the
 * origin registered for its audience, on every hop.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent, fetch, interceptors, request, type Dispatcher } from 'undici'
import { Authority, createVerifier, MemoryAuditLog, type Verifier } from 'agent-trust'
import {
  AGENT_CAPABILITY_HEADER,
  createAgentCallDispatcher,
  createAgentCallGuard,
  createAgentCapabilityInterceptor,
  createEgressAgent,
  createHttpTool,
} from 'agent-trust/egress'
import { scriptedResolver, startServer, type TestServer } from '../support/egress.js'
import { CONTEXT } from '../support/seed.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

let db: TestServer
let evil: TestServer
let authority: Authority
let verifier: Verifier
let audit: MemoryAuditLog
let dbOrigin: string
const jtis: string[] = []

const resolver = scriptedResolver({ 'agent-database-reader': ['127.0.0.1'], 'evil.example.net': ['127.0.0.1'] })

beforeAll(async () => {
  // A declared, non-agent host with an open redirect (or an agent-looking answer).
  evil = await startServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    if (u.pathname === '/open-redirect') return void res.writeHead(307, { location: u.searchParams.get('to') ?? '/' }).end()
    res.end('collected')
  })
  // The database agent: every route behind the capability guard; some routes redirect.
  const holder: { guarded?: (req: IncomingMessage, res: ServerResponse) => void } = {}
  db = await startServer((req, res) => {
    // An endpoint outside the guard that echoes its request, as a careless one would.
    if (req.url === '/raw-echo') return void res.end(JSON.stringify({ headers: req.headers }))
    holder.guarded?.(req, res)
  })
  dbOrigin = `http://agent-database-reader:${db.port}`
  audit = new MemoryAuditLog()
  authority = await Authority.create({
    manifest: {
      authority: { id: 'moltbot-authority' },
      agents: [
        {
          id: 'agent-summarizer-v2',
          trustLevel: 'L2',
          grants: ['agent:agent-database-reader:call', 'db:read:documents:namespace:user-123'],
          egress: [`${dbOrigin} internal`, `http://evil.example.net:${evil.port} internal`],
        },
        { id: 'agent-status-reader', trustLevel: 'L1', grants: ['agent:agent-database-reader:call'] },
        {
          id: 'agent-database-reader',
          trustLevel: 'L2',
          origin: dbOrigin,
          tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
        },
      ],
    },
  })
  verifier = createVerifier({
    id: 'agent-database-reader',
    issuers: [authority.trustedIssuer()],
    mode: 'enforce',
    audit,
    store: authority.store,
  })
  const guard = createAgentCallGuard({ verifier })
  holder.guarded = guard.node((req, res, capability) => {
    if (capability !== undefined) jtis.push(capability.claims.jti)
    if (req.url === '/redirect-away') return void res.writeHead(302, { location: `http://evil.example.net:${evil.port}/collect` }).end()
    if (req.url === '/echo') return void res.end(JSON.stringify({ headers: req.headers, raw: req.rawHeaders }))
    if (req.url === '/hop-away') return void res.writeHead(307, { location: `http://evil.example.net:${evil.port}/take` }).end()
    if (req.url === '/hop') return void res.writeHead(307, { location: '/final' }).end()
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ presenter: capability?.presenter, scope: capability?.claims.scope, path: req.url }))
  })
})

afterAll(async () => {
  await db.close()
  await evil.close()
})

function capabilities(overrides: Partial<Parameters<typeof createAgentCapabilityInterceptor>[0]> = {}) {
  return { issuer: authority, subject: 'agent-summarizer-v2', targets: authority.manifest, context: CONTEXT, ...overrides }
}

function egressAgent(): Dispatcher {
  return createEgressAgent({
    agentId: 'agent-summarizer-v2',
    trustLevel: 'L2',
    egress: authority.manifest.agents[0]!.egress,
    resolver,
    mode: 'enforce',
    maxRedirections: 3,
    capabilities: capabilities(),
  })
}

describe('client: a redirect never changes whom the request acts on', () => {
  it('an open redirect on a declared host is not followed into a registered agent with a fresh token', async () => {
    const d = egressAgent()
    const before = db.seen.length
    const minted = jtis.length
    const to = encodeURIComponent(`${dbOrigin}/admin/delete?all=1`)
    for (const url of [`http://evil.example.net:${evil.port}/open-redirect?to=${to}`]) {
      const r = await request(url, { dispatcher: d }).catch((e: unknown) => e)
      expect(r).toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { rule: 'redirect-agent' } })
      const f = await fetch(url, { dispatcher: d }).catch((e: unknown) => (e as { cause?: unknown }).cause)
      expect(f).toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { rule: 'redirect-agent' } })
    }
    expect(db.seen.length).toBe(before)
    expect(jtis.length).toBe(minted)
    await d.close()
  })

  it('a POST body is never replayed across origins by a 307, even to a declared host', async () => {
    const d = egressAgent()
    const before = evil.seen.length
    // The agent answers 307 to another origin: the body stays where it was sent.
    const r = await request(`${dbOrigin}/hop-away`, { dispatcher: d, method: 'POST', body: '{"wipe":true}' }).catch((e: unknown) => e)
    expect(r).toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { rule: 'redirect-body' } })
    expect(evil.seen.length).toBe(before)
    await d.close()
  })
})

describe('createAgentCallGuard', () => {
  it('validates its options', async () => {
    await expectOptionMisuse(() => createAgentCallGuard({} as never), { path: 'verifier' })
    await expectOptionMisuse(() => createAgentCallGuard({ verifier: { id: 'x' } as never }), { path: 'verifier' })
    await expectOptionMisuse(() => createAgentCallGuard({ verifier, requirement: { scope: 'x' } as never }), { path: 'requirement' })
    await expectOptionMisuse(() => createAgentCallGuard({ verifier, peerIdentiy: () => undefined } as never), { path: 'peerIdentiy' })
    await expectOptionMisuse(() => createAgentCallGuard({ verifier, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
  })
})

describe('tokens stay where they belong', () => {
  it("createAgentCallGuard removes the capability before the application's handler (node and fetch)", async () => {
    const d = egressAgent()
    const r = await request(`${dbOrigin}/echo`, { dispatcher: d })
    const seen = (await r.body.json()) as { headers: Record<string, unknown>; raw: string[] }
    expect(r.statusCode).toBe(200)
    expect(seen.headers[AGENT_CAPABILITY_HEADER]).toBeUndefined()
    expect(seen.raw.map((h) => h.toLowerCase())).not.toContain(AGENT_CAPABILITY_HEADER)
    await d.close()
    const token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: ['agent:agent-database-reader:call'],
      operation: 'read',
      context: CONTEXT,
    })
    let handed: string | null = 'unset'
    const handler = createAgentCallGuard({ verifier }).fetch((req) => {
      handed = req.headers.get(AGENT_CAPABILITY_HEADER)
      return new Response('ok')
    })
    const res = await handler(new Request('http://agent-database-reader/x', { headers: { [AGENT_CAPABILITY_HEADER]: token } }))
    expect(res.status).toBe(200)
    expect(handed).toBeNull()
  })

  it("the HTTP tool redacts the caller's own live capability from what it returns to the model", async () => {
    const tool = createHttpTool({
      agentId: 'agent-summarizer-v2',
      trustLevel: 'L2',
      egress: authority.manifest.agents[0]!.egress,
      resolver,
      mode: 'enforce',
      capabilities: capabilities(),
    })
    const r = await tool({ url: `${dbOrigin}/raw-echo` })
    expect(r.status).toBe(200)
    expect(r.body).toContain('[redacted capability]')
    expect(r.body).not.toMatch(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/)
    await tool.close()
  })
})

describe('client: a fresh token per hop, only to the registered origin', () => {
  it('calls the database agent with a token minted for it', async () => {
    const d = egressAgent()
    const r = await request(`${dbOrigin}/documents`, { dispatcher: d })
    expect(r.statusCode).toBe(200)
    expect(await r.body.json()).toEqual({
      presenter: 'agent-summarizer-v2',
      scope: ['agent:agent-database-reader:call'],
      path: '/documents',
    })
    const f = await fetch(`${dbOrigin}/documents`, { dispatcher: d, method: 'POST', body: '{}' })
    expect(f.status).toBe(200)
    await f.text()
    await d.close()
  })

  it('same-origin redirect: each hop carries its own single-use token', async () => {
    const d = egressAgent()
    const before = jtis.length
    const r = await request(`${dbOrigin}/hop`, { dispatcher: d, maxRedirections: 3 } as Parameters<typeof request>[1])
    expect(await r.body.json()).toMatchObject({ path: '/final' })
    const used = jtis.slice(before)
    expect(used).toHaveLength(2)
    expect(new Set(used).size).toBe(2)
    await d.close()
  })

  it.each(['request', 'fetch'] as const)('cross-origin redirect never carries the token (%s)', async (kind) => {
    const d = egressAgent()
    const before = evil.seen.length
    const url = `${dbOrigin}/redirect-away`
    const r =
      kind === 'request'
        ? await request(url, { dispatcher: d, maxRedirections: 3 } as Parameters<typeof request>[1])
        : await fetch(url, { dispatcher: d })
    expect(kind === 'request' ? await (r as Dispatcher.ResponseData).body.text() : await (r as Response).text()).toBe('collected')
    const hop = evil.seen[before]
    expect(hop?.url).toBe('/collect')
    expect(hop?.headers[AGENT_CAPABILITY_HEADER]).toBeUndefined()
    expect(JSON.stringify(hop?.headers)).not.toMatch(/eyJ/)
    await d.close()
  })

  it('a capability header set by the caller is removed on every other origin', async () => {
    const d = egressAgent()
    const before = evil.seen.length
    const r = await request(`http://evil.example.net:${evil.port}/x`, {
      dispatcher: d,
      headers: { 'Agent-Capability': 'copied-from-somewhere' },
    })
    await r.body.dump()
    expect(evil.seen[before]?.headers[AGENT_CAPABILITY_HEADER]).toBeUndefined()
    await d.close()
  })

  it('why: undici itself carries custom headers across origins on redirect', async () => {
    const plain = new Agent({
      connect: {
        lookup: (_h: string, _o: unknown, cb: (e: null, a: Array<{ address: string; family: number }>) => void) =>
          cb(null, [{ address: '127.0.0.1', family: 4 }]),
      } as never,
    }).compose(interceptors.redirect({ maxRedirections: 3 }))
    const before = evil.seen.length
    const token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: ['agent:agent-database-reader:call'],
      operation: 'read',
      context: CONTEXT,
    })
    const r = await request(`${dbOrigin}/redirect-away`, {
      dispatcher: plain,
      headers: { [AGENT_CAPABILITY_HEADER]: token },
      maxRedirections: 3,
    } as Parameters<typeof request>[1])
    await r.body.dump()
    expect(evil.seen[before]?.headers[AGENT_CAPABILITY_HEADER]).toBe(token)
    evil.seen.length = before
    await plain.close()
  })

  it('order matters: the capability interceptor outside the redirect one would leak', async () => {
    const lookup = (_h: string, _o: unknown, cb: (e: null, a: Array<{ address: string; family: number }>) => void) =>
      cb(null, [{ address: '127.0.0.1', family: 4 }])
    const wrong = new Agent({ connect: { lookup } as never }).compose(
      interceptors.redirect({ maxRedirections: 3 }),
      createAgentCapabilityInterceptor(capabilities()),
    )
    const before = evil.seen.length
    const r = await request(`${dbOrigin}/redirect-away`, { dispatcher: wrong, maxRedirections: 3 } as Parameters<typeof request>[1])
    await r.body.dump()
    expect(evil.seen[before]?.headers[AGENT_CAPABILITY_HEADER]).toMatch(/^eyJ/)
    evil.seen.length = before
    await wrong.close()
    const right = new Agent({ connect: { lookup } as never }).compose(
      createAgentCapabilityInterceptor(capabilities()),
      interceptors.redirect({ maxRedirections: 3 }),
    )
    const r2 = await request(`${dbOrigin}/redirect-away`, { dispatcher: right, maxRedirections: 3 } as Parameters<typeof request>[1])
    await r2.body.dump()
    expect(evil.seen[before]?.headers[AGENT_CAPABILITY_HEADER]).toBeUndefined()
    await right.close()
  })

  it('createAgentCallDispatcher and a tool-shaped capability (mintForTool)', async () => {
    const d = createAgentCallDispatcher({
      ...capabilities({ capability: () => ({ tool: 'read_documents', args: { namespace: 'user-123' } }) }),
      agentOptions: {
        connect: {
          lookup: (_h: string, _o: unknown, cb: (e: null, a: Array<{ address: string; family: number }>) => void) =>
            cb(null, [{ address: '127.0.0.1', family: 4 }]),
        } as never,
      },
    })
    // The server's default requirement wants agent:...:call, the token carries the tool scope: 403.
    const r = await request(`${dbOrigin}/documents`, { dispatcher: d })
    expect(r.statusCode).toBe(403)
    expect(r.headers['www-authenticate']).toBe(
      'Bearer realm="agent-database-reader", error="insufficient_scope", scope="agent:agent-database-reader:call"',
    )
    expect(await r.body.json()).toMatchObject({ error: { code: 'ERR_SCOPE_DENIED' } })
    await d.close()
  })

  it('an issuer refusal fails the request with its coded error, nothing is sent', async () => {
    const d = createEgressAgent({
      agentId: 'agent-status-reader',
      trustLevel: 'L1',
      egress: [`${dbOrigin} internal`],
      resolver,
      mode: 'enforce',
      capabilities: capabilities({
        subject: 'agent-status-reader',
        capability: () => ({ scope: ['agent:agent-database-reader:call'], operation: 'execute' }),
      }),
    })
    const before = db.seen.length
    await expect(request(`${dbOrigin}/documents`, { dispatcher: d })).rejects.toMatchObject({ code: 'ERR_TRUST_LEVEL' })
    expect(db.seen.length).toBe(before)
    await d.close()
  })

  it('refuses ambiguous or bad target registrations, naming the entry', async () => {
    const bad: Array<[unknown, string]> = [
      [
        [
          { agentId: 'a', origin: 'http://x.example:1' },
          { agentId: 'b', origin: 'HTTP://X.example:1/' },
        ],
        'targets[1].origin',
      ],
      [[{ agentId: 'a', origin: 'ftp://x.example' }], 'targets[0].origin'],
      [[{ agentId: 'a', origin: 'http://u:p@x.example' }], 'targets[0].origin'],
      [[{ agentId: 'a', origin: 'http://x.example/path' }], 'targets[0].origin'],
      [[{ agentId: '', origin: 'http://x.example' }], 'targets[0].agentId'],
      [{ agents: [{ id: 'a' }, { id: 'b', origin: 'http://x.example/p' }] }, 'targets.agents[1].origin'],
    ]
    for (const [targets, path] of bad) {
      await expectOptionMisuse(() => createAgentCapabilityInterceptor(capabilities({ targets: targets as never })), {
        path,
        secrets: ['u:p'],
      })
      await expectOptionMisuse(() => createAgentCallDispatcher(capabilities({ targets: targets as never })), { path })
    }
  })

  it('validates its options: the interceptor and the dispatcher name the option', async () => {
    const interceptor = (o: Record<string, unknown>) => () => createAgentCapabilityInterceptor(capabilities(o as never))
    await expectOptionMisuse(() => createAgentCapabilityInterceptor(undefined as never), { path: 'issuer' })
    await expectOptionMisuse(interceptor({ issuer: { mint() {} } }), { path: 'issuer' })
    await expectOptionMisuse(interceptor({ subject: '' }), { path: 'subject' })
    await expectOptionMisuse(interceptor({ context: 'ctx' }), { path: 'context' })
    await expectOptionMisuse(interceptor({ capability: { scope: [] } }), { path: 'capability' })
    await expectOptionMisuse(interceptor({ ttlSeconds: 301 }), { path: 'ttlSeconds' })
    await expectOptionMisuse(interceptor({ certificateThumbprint: '' }), { path: 'certificateThumbprint' })
    await expectOptionMisuse(interceptor({ targets: 'all' }), { path: 'targets' })
    await expectOptionMisuse(interceptor({ maxRedirections: 1 }), { path: 'maxRedirections' })
    await expectOptionMisuse(interceptor({ [HOSTILE_KEY]: 1 }), { path: HOSTILE_KEY_PATH })
    const dispatcher = (o: Record<string, unknown>) => () => createAgentCallDispatcher(capabilities(o as never))
    await expectOptionMisuse(dispatcher({ maxRedirections: -1 }), { path: 'maxRedirections' })
    await expectOptionMisuse(dispatcher({ tls: {} }), { path: 'tls' })
    await expectOptionMisuse(dispatcher({ agentOptions: 'x' }), { path: 'agentOptions' })
    await expectOptionMisuse(dispatcher({ subjet: 'x' }), { path: 'subjet' })
    const tls = { connect: () => ({}) }
    await expectOptionMisuse(dispatcher({ tls, agentOptions: { connect: {} } }), { path: 'agentOptions.connect' })
    await expectOptionMisuse(dispatcher({ tls, targets: [{ agentId: 'a', origin: 'http://x.example' }] }), { path: 'targets[0].origin' })
    await createAgentCallDispatcher({ ...capabilities(), maxRedirections: 2 }).close()
  })

  it('createEgressAgent checks its capabilities with the same schema, under capabilities', async () => {
    const base = { agentId: 'agent-summarizer-v2', trustLevel: 'L2' as const, egress: [], mode: 'enforce' as const }
    await expectOptionMisuse(() => createEgressAgent({ ...base, capabilities: capabilities({ subject: '' }) }), {
      path: 'capabilities.subject',
    })
    await expectOptionMisuse(
      () => createEgressAgent({ ...base, capabilities: capabilities({ targets: [{ agentId: 'a', origin: 'http://x.example/p' }] }) }),
      { path: 'capabilities.targets[0].origin' },
    )
  })
})

describe('server: 401/403 with WWW-Authenticate and the coded error', () => {
  const url = 'http://agent-database-reader/documents'
  const handler = async (_req: Request) => new Response('secret documents')

  async function call(init: RequestInit & { token?: string } = {}, guardVerifier = verifier) {
    const guard = createAgentCallGuard({ verifier: guardVerifier })
    const headers = new Headers(init.headers)
    if (init.token !== undefined) headers.set(AGENT_CAPABILITY_HEADER, init.token)
    const res = await guard.fetch(handler)(new Request(url, { ...init, headers }))
    return { status: res.status, www: res.headers.get('www-authenticate'), body: await res.text() }
  }

  const mint = (subject = 'agent-summarizer-v2', scope = 'agent:agent-database-reader:call', operation: 'read' | 'execute' = 'read') =>
    authority.mint({ subject, audience: 'agent-database-reader', scope: [scope], operation, context: CONTEXT })

  it('allows a valid token, once', async () => {
    const token = await mint()
    expect(await call({ token })).toMatchObject({ status: 200, body: 'secret documents' })
    const replay = await call({ token })
    expect(replay).toMatchObject({ status: 401, www: 'Bearer realm="agent-database-reader", error="invalid_token"' })
    expect(JSON.parse(replay.body)).toMatchObject({ error: { code: 'ERR_TOKEN_REPLAYED' } })
    expect(replay.body).not.toContain(token)
  })

  it('401 without a token, with a malformed one, with two of them', async () => {
    expect(await call()).toMatchObject({ status: 401, www: 'Bearer realm="agent-database-reader"' })
    expect(JSON.parse((await call()).body)).toEqual({ error: { code: 'ERR_TOKEN_MISSING', message: expect.any(String) } })
    const bad = await call({ token: 'not.a.token' })
    expect(bad).toMatchObject({ status: 401, www: expect.stringContaining('invalid_token') })
    const [a, b] = [await mint(), await mint()]
    const headers = new Headers()
    headers.append(AGENT_CAPABILITY_HEADER, a)
    headers.append(AGENT_CAPABILITY_HEADER, b)
    const two = await call({ headers })
    expect(two.status).toBe(401)
    expect(JSON.parse(two.body).error.code).toBe('ERR_TOKEN_MALFORMED')
  })

  it('403 for a valid token without the scope or the level this request needs', async () => {
    const wrongScope = await call({ token: await mint('agent-summarizer-v2', 'db:read:documents:namespace:user-123') })
    expect(wrongScope).toMatchObject({
      status: 403,
      www: 'Bearer realm="agent-database-reader", error="insufficient_scope", scope="agent:agent-database-reader:call"',
    })
    // An L1 agent's read token presented for a POST (execute): its level does not permit it.
    const l1 = await call({ method: 'POST', body: 'x', token: await mint('agent-status-reader') })
    expect(l1.status).toBe(403)
    expect(JSON.parse(l1.body).error.code).toBe('ERR_TRUST_LEVEL')
  })

  it('runs the verifier with the mTLS peer when a peerIdentity hook is given', async () => {
    const guard = createAgentCallGuard({ verifier, peerIdentity: () => ({ agentId: 'agent-status-reader' }) })
    const headers = new Headers({ [AGENT_CAPABILITY_HEADER]: await mint() })
    const res = await guard.fetch(handler)(new Request(url, { headers }))
    expect(res.status).toBe(401)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_TOKEN_BINDING')
  })

  it('audit mode lets the call through unenforced; every decision is an agent_call event', async () => {
    const log = new MemoryAuditLog()
    const auditing = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'audit', audit: log })
    expect(await call({}, auditing)).toMatchObject({ status: 200 })
    expect(log.events).toMatchObject([{ action: 'agent_call', decision: 'deny', code: 'ERR_TOKEN_MISSING', enforced: false }])
  })

  it('node:http: the listener never runs for a denied call', async () => {
    const before = db.seen.length
    const r = await request(`http://127.0.0.1:${db.port}/documents`)
    expect(r.statusCode).toBe(401)
    expect(r.headers['www-authenticate']).toBe('Bearer realm="agent-database-reader"')
    expect(await r.body.json()).toMatchObject({ error: { code: 'ERR_TOKEN_MISSING' } })
    expect(db.seen.length).toBe(before + 1)
    expect(audit.events.some((e) => e.action === 'agent_call' && e.code === 'ERR_TOKEN_MISSING')).toBe(true)
  })
})
