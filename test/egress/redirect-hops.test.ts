/**
 * The guard decides every redirect hop itself, from the raw `Location`, whichever entry point
 * made the request: the HTTP tool, undici's `request` with the egress agent as dispatcher, and
 * undici's `fetch` with it (which follows redirects on its own). Each case is driven through
 * all three and must give the same coded refusal (ERR_EGRESS_DENIED with the same rule), with
 * no socket opened for the refused hop.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fetch, request } from 'undici'
import { createEgressAgent, createHttpTool } from 'agent-trust/egress'
import { refusal, scriptedResolver, startServer, type TestServer } from '../support/egress.js'

let hub: TestServer
let other: TestServer
let evil: TestServer

const resolver = scriptedResolver({
  'api.example.com': ['127.0.0.1'],
  'other.example.com': ['127.0.0.1'],
  'evil.example.net': ['127.0.0.1'],
})

/** `/r?status=307&to=<Location>` answers a redirect with that raw Location; anything else 200. */
function redirector(req: IncomingMessage, res: ServerResponse): void {
  const u = new URL(req.url ?? '/', 'http://x')
  if (u.pathname !== '/r') return void res.end(JSON.stringify({ path: req.url, method: req.method }))
  // Node writes header values as latin1 bytes, tabs and soft hyphens included.
  const to = Buffer.from(u.searchParams.get('to') ?? '', 'base64url').toString('latin1')
  res.writeHead(Number(u.searchParams.get('status') ?? '302'), { location: to })
  res.end()
}

beforeAll(async () => {
  hub = await startServer(redirector)
  other = await startServer(redirector)
  evil = await startServer((_q, s) => s.end('collected'))
})

afterAll(async () => {
  for (const s of [hub, other, evil]) await s?.close()
})

function options() {
  return {
    agentId: 'agent-summarizer-v2',
    trustLevel: 'L2' as const,
    egress: [
      `http://api.example.com:${hub.port} internal`,
      `http://other.example.com:${other.port} internal`,
      'http://nx.example.com internal',
      'http://slow.example.com internal',
    ],
    resolver: async (name: string) => {
      if (name === 'slow.example.com') throw Object.assign(new Error('queryA ETIMEOUT slow.example.com'), { code: 'ETIMEOUT' })
      return resolver(name)
    },
    mode: 'enforce' as const,
    maxRedirections: 3,
    connect: { timeout: 2_000 },
  }
}

type Entry = (url: string, method: string, body?: string) => Promise<unknown>

const entries: Record<string, () => { call: Entry; close: () => Promise<void> }> = {
  'the HTTP tool': () => {
    const tool = createHttpTool(options())
    return { call: (url, method, body) => tool({ url, method, ...(body === undefined ? {} : { body }) }), close: () => tool.close() }
  },
  'request with the dispatcher': () => {
    const dispatcher = createEgressAgent(options())
    return {
      call: async (url, method, body) => {
        const r = await request(url, { dispatcher, method: method as 'GET', body: body ?? null })
        await r.body.dump()
        return r.statusCode
      },
      close: () => dispatcher.close(),
    }
  },
  'fetch with the dispatcher': () => {
    const dispatcher = createEgressAgent(options())
    return {
      call: async (url, method, body) => {
        const r = await fetch(url, { dispatcher, method, ...(body === undefined ? {} : { body }) })
        await r.arrayBuffer()
        return r.status
      },
      close: () => dispatcher.close(),
    }
  },
}

const hop = (to: string, status = 302) =>
  `http://api.example.com:${hub.port}/r?status=${status}&to=${Buffer.from(to, 'latin1').toString('base64url')}`

const cases: Array<{ name: string; to: () => string; rule: string; status?: number; method?: string }> = [
  { name: 'userinfo in the Location', to: () => `http://user:pw@api.example.com:${hub.port}/ok`, rule: 'userinfo' },
  { name: 'userinfo on a relative network-path Location', to: () => `//attacker@api.example.com:${hub.port}/ok`, rule: 'userinfo' },
  { name: 'file: Location', to: () => 'file:///etc/passwd', rule: 'scheme' },
  { name: 'data: Location', to: () => 'data:text/plain,hello', rule: 'scheme' },
  { name: 'gopher: Location', to: () => `gopher://api.example.com:${hub.port}/_`, rule: 'scheme' },
  { name: 'a tab in the Location host', to: () => `http://api.exa\tmple.com:${hub.port}/ok`, rule: 'control-character' },
  { name: 'a soft hyphen in the Location host', to: () => `http://api.exam\u00adple.com:${hub.port}/ok`, rule: 'control-character' },
  { name: 'an undeclared host', to: () => `http://evil.example.net:${evil.port}/collect`, rule: 'not-declared' },
  { name: 'a private IP literal', to: () => `http://127.0.0.1:${evil.port}/collect`, rule: 'ip-literal' },
  { name: 'a declared host on another port', to: () => `http://api.example.com:${evil.port}/collect`, rule: 'not-declared' },
  { name: 'a %00 in the Location host', to: () => `http://api.example.com%00.evil.example.net:${evil.port}/`, rule: 'url-invalid' },
  {
    name: 'a 307 replaying a POST body to another declared origin',
    to: () => `http://other.example.com:${other.port}/take`,
    rule: 'redirect-body',
    status: 307,
    method: 'POST',
  },
  {
    name: 'a 302 keeping PUT (and its body) to another declared origin',
    to: () => `http://other.example.com:${other.port}/take`,
    rule: 'redirect-body',
    status: 302,
    method: 'PUT',
  },
]

describe.each(Object.keys(entries))('redirect hops through %s', (entryName) => {
  for (const c of cases) {
    it(`refuses ${c.name} (rule ${c.rule}), opening no socket for it`, async () => {
      const entry = (entries[entryName] as () => { call: Entry; close: () => Promise<void> })()
      const before = { hub: hub.connections, other: other.connections, evil: evil.connections }
      const method = c.method ?? 'GET'
      const err = await refusal(entry.call(hop(c.to(), c.status), method, method === 'GET' ? undefined : '{"secret":1}'))
      expect(err.code).toBe('ERR_EGRESS_DENIED')
      expect(err.details?.rule).toBe(c.rule)
      expect(evil.connections).toBe(before.evil)
      expect(other.connections).toBe(before.other)
      // One socket for the first hop, none for the refused one.
      expect(hub.connections - before.hub).toBe(1)
      expect(other.seen.some((s) => s.url === '/take')).toBe(false)
      await entry.close()
    })
  }

  it('follows a declared same-origin hop and a GET to another declared origin', async () => {
    const entry = (entries[entryName] as () => { call: Entry; close: () => Promise<void> })()
    await expect(entry.call(hop('/landed', 307), 'POST', 'x')).resolves.toBeDefined()
    await expect(entry.call(hop(`http://other.example.com:${other.port}/landed`, 302), 'GET')).resolves.toBeDefined()
    // A 303 turns the POST into a GET: no body crosses.
    await expect(entry.call(hop(`http://other.example.com:${other.port}/landed`, 303), 'POST', 'x')).resolves.toBeDefined()
    const landed = other.seen.filter((s) => s.url === '/landed')
    expect(landed.every((s) => s.method === 'GET' && s.body === '')).toBe(true)
    await entry.close()
  })

  it('reports a resolver failure as rule resolve-failed with its cause (NXDOMAIN, timeout)', async () => {
    const entry = (entries[entryName] as () => { call: Entry; close: () => Promise<void> })()
    const nx = await refusal(entry.call('http://nx.example.com/', 'GET'))
    expect(nx.code).toBe('ERR_EGRESS_DENIED')
    expect(nx.details).toMatchObject({ rule: 'resolve-failed', cause: 'ENOTFOUND' })
    const slow = await refusal(entry.call('http://slow.example.com/', 'GET'))
    expect(slow.details).toMatchObject({ rule: 'resolve-failed', cause: 'ETIMEOUT' })
    // And on a later hop.
    const later = await refusal(entry.call(hop('http://nx.example.com/'), 'GET'))
    expect(later.details).toMatchObject({ rule: 'resolve-failed', cause: 'ENOTFOUND' })
    await entry.close()
  })
})
