/**
 * The first URL is decided from the caller's own string, whichever entry point takes it: the
 * HTTP tool, and `fetch`/`request` from `agent-trust/egress` (undici's, with the string decided
 * before undici's WHATWG parser can normalize or refuse it uncoded). Each case must give the same
 * coded refusal with the same rule, and open no socket. undici's own `fetch`/`request` with the
 * egress agent as dispatcher see only the normalized URL: they never reach an undeclared host.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fetch as undiciFetch, request as undiciRequest } from 'undici'
import { createEgressAgent, createHttpTool, fetch, request } from 'agent-trust/egress'
import { refusal, scriptedResolver, startServer, type TestServer } from '../support/egress.js'

let api: TestServer
let evil: TestServer

beforeAll(async () => {
  api = await startServer((q, s) => s.end(JSON.stringify({ url: q.url, auth: q.headers.authorization ?? null })))
  evil = await startServer((_q, s) => s.end('collected'))
})
afterAll(async () => {
  await api?.close()
  await evil?.close()
})

const options = (trustLevel: 'L1' | 'L2' = 'L2') => ({
  agentId: 'agent-summarizer-v2',
  trustLevel,
  egress: [`http://api.example.com:${api.port} internal`],
  resolver: scriptedResolver({ 'api.example.com': ['127.0.0.1'], 'evil.example.net': ['127.0.0.1'] }),
  mode: 'enforce' as const,
})

type Call = (url: string, method?: string) => Promise<unknown>
const entries: Record<string, () => { call: Call; close: () => Promise<void> }> = {
  'the HTTP tool': () => {
    const tool = createHttpTool(options())
    return { call: (url, method = 'GET') => tool({ url, method }), close: () => tool.close() }
  },
  'request from agent-trust/egress': () => {
    const dispatcher = createEgressAgent(options())
    return {
      call: async (url, method = 'GET') => (await request(url, { dispatcher, method: method as 'GET' })).body.dump(),
      close: () => dispatcher.close(),
    }
  },
  'fetch from agent-trust/egress': () => {
    const dispatcher = createEgressAgent(options())
    return {
      call: async (url, method = 'GET') => (await fetch(url, { dispatcher, method })).arrayBuffer(),
      close: () => dispatcher.close(),
    }
  },
}

const cases: Array<{ name: string; url: () => string; rule: string }> = [
  { name: 'userinfo', url: () => `http://user:pw@api.example.com:${api.port}/`, rule: 'userinfo' },
  { name: 'a tab in the host', url: () => `http://api.exa\tmple.com:${api.port}/`, rule: 'control-character' },
  { name: 'a newline in the path', url: () => `http://api.example.com:${api.port}/a\r\nX-Injected: 1`, rule: 'control-character' },
  { name: 'a soft hyphen in the host', url: () => `http://api.exam\u00adple.com:${api.port}/`, rule: 'control-character' },
  { name: 'a zero-width space in the host', url: () => `http://api.exam\u200bple.com:${api.port}/`, rule: 'control-character' },
  { name: 'a %00 in the host', url: () => `http://api.example.com%00.evil.example.net:${api.port}/`, rule: 'url-invalid' },
  { name: 'a file: URL', url: () => 'file:///etc/passwd', rule: 'scheme' },
  { name: 'a data: URL', url: () => 'data:text/plain,hi', rule: 'scheme' },
  { name: 'an undeclared host', url: () => `http://evil.example.net:${evil.port}/`, rule: 'not-declared' },
  { name: 'a declared host on another port', url: () => `http://api.example.com:${evil.port}/`, rule: 'not-declared' },
  { name: 'a private IP literal', url: () => `http://127.0.0.1:${evil.port}/`, rule: 'ip-literal' },
  { name: 'a relative URL', url: () => '/admin', rule: 'url-invalid' },
]

describe.each(Object.keys(entries))('the first URL through %s', (entryName) => {
  for (const c of cases) {
    it(`refuses ${c.name} (rule ${c.rule}), opening no socket`, async () => {
      const entry = (entries[entryName] as () => { call: Call; close: () => Promise<void> })()
      const before = { api: api.connections, evil: evil.connections }
      const err = await refusal(entry.call(c.url()))
      expect(err.code).toBe('ERR_EGRESS_DENIED')
      expect(err.details?.rule).toBe(c.rule)
      expect({ api: api.connections, evil: evil.connections }).toEqual(before)
      await entry.close()
    })
  }

  it('lets a declared URL through', async () => {
    const entry = (entries[entryName] as () => { call: Call; close: () => Promise<void> })()
    const before = api.seen.length
    await entry.call(`http://api.example.com:${api.port}/ok`)
    expect(api.seen.length).toBe(before + 1)
    await entry.close()
  })
})

describe('fetch and request from agent-trust/egress', () => {
  it('refuse a dispatcher that is not an egress agent, with a coded error', async () => {
    const { Agent } = await import('undici')
    const plain = new Agent()
    for (const p of [
      fetch(`http://api.example.com:${api.port}/`, { dispatcher: plain }),
      request(`http://api.example.com:${api.port}/`, { dispatcher: plain }),
    ]) {
      await expect(p).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID', details: { rule: 'dispatcher' } })
    }
    await plain.close()
  })

  it('apply the level to the method of a Request object and of init', async () => {
    const dispatcher = createEgressAgent(options('L1'))
    const url = `http://api.example.com:${api.port}/`
    expect((await refusal(fetch(url, { dispatcher, method: 'post' }))).details?.rule).toBe('method')
    expect((await refusal(request(url, { dispatcher, method: 'DELETE' }))).details?.rule).toBe('method')
    const { Request } = await import('undici')
    expect((await refusal(fetch(new Request(url, { method: 'PUT', body: 'x' }), { dispatcher }))).details?.rule).toBe('method')
    await dispatcher.close()
  })

  it('decide any string the same way as the HTTP tool (property)', async () => {
    const dispatcher = createEgressAgent(options())
    const tool = createHttpTool(options())
    const evilBefore = evil.connections
    const piece = fc.constantFrom(
      'api.example.com',
      `:${api.port}`,
      `:${evil.port}`,
      'evil.example.net',
      '@',
      'user:pw',
      '\t',
      '\u00ad',
      '%00',
      '/',
      'http://',
      'https://',
      'file:',
      '127.0.0.1',
      '[::1]',
      '#',
      '?',
      '\\',
      '.',
    )
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 8 }), async (parts) => {
        const url = parts.join('')
        const outcome = async (p: Promise<unknown>) => {
          try {
            await p
            return 'ok'
          } catch (e) {
            const err = await refusal(Promise.reject(e))
            return `${err.code}:${String(err.details?.rule)}`
          }
        }
        const viaTool = await outcome(tool({ url }))
        const viaFetch = await outcome(fetch(url, { dispatcher }).then((r) => r.arrayBuffer()))
        const viaRequest = await outcome(request(url, { dispatcher }).then((r) => r.body.dump()))
        expect(viaFetch).toBe(viaTool)
        expect(viaRequest).toBe(viaTool)
      }),
      { numRuns: 150 },
    )
    expect(evil.connections).toBe(evilBefore)
    await dispatcher.close()
    await tool.close()
  })
})

describe("undici's own fetch and request with the egress agent as dispatcher", () => {
  it('decide the normalized URL: what normalizes to a declared host is that host, userinfo never reaches it', async () => {
    const dispatcher = createEgressAgent(options())
    const r = await undiciRequest(`http://user:pw@api.exa\tmple.com:${api.port}/a`, { dispatcher })
    expect(JSON.parse(await r.body.text())).toEqual({ url: '/a', auth: null })
    const f = await undiciFetch(`http://api.exam\u00adple.com:${api.port}/b`, { dispatcher })
    expect(JSON.parse(await f.text())).toMatchObject({ url: '/b' })
    await dispatcher.close()
  })

  it('never reach an undeclared host from any string (property)', async () => {
    const dispatcher = createEgressAgent(options())
    const before = evil.connections
    const piece = fc.constantFrom(
      'api.example.com',
      `:${evil.port}`,
      'evil.example.net',
      '@',
      '\t',
      '\u00ad',
      '%2e',
      '/',
      'http://',
      '127.0.0.1',
      '\\',
      '.',
      '#',
    )
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 8 }), async (parts) => {
        const url = parts.join('')
        // undici's parser throws synchronously for some strings: either way, nothing may be reached.
        await Promise.resolve()
          .then(() => undiciFetch(url, { dispatcher }))
          .then(
            (r) => r.arrayBuffer(),
            () => undefined,
          )
        await Promise.resolve()
          .then(() => undiciRequest(url, { dispatcher }))
          .then(
            (r) => r.body.dump(),
            () => undefined,
          )
      }),
      { numRuns: 150 },
    )
    expect(evil.connections).toBe(before)
    await dispatcher.close()
  })
})
