/** JWKS HTTP handlers: Fetch-API and node:http (through a real loopback server), headers, ETag, methods. */
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createJwksHandler, jwksFetchHandler, jwksNodeHandler, KeySet, type JSONWebKeySet } from 'agent-trust'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

describe('jwksFetchHandler', () => {
  it('serves the public JWKS with content type, Cache-Control and a strong ETag', async () => {
    const keys = await KeySet.create()
    const handler = jwksFetchHandler(keys)
    const res = handler(new Request('http://authority.test/.well-known/jwks.json'))
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/jwk-set+json')
    expect(res.headers.get('cache-control')).toBe('public, max-age=60, must-revalidate')
    expect(res.headers.get('etag')).toMatch(/^"[A-Za-z0-9_-]{43}"$/)
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    const body = (await res.json()) as JSONWebKeySet
    expect(body.keys.map((k) => k.kid)).toEqual([keys.active().kid])
  })

  it('answers 304 to a matching If-None-Match, and a new ETag after a rotation', async () => {
    const keys = await KeySet.create()
    const handler = jwksFetchHandler(keys, { maxAgeSeconds: 30 })
    const etag = handler(new Request('http://a/')).headers.get('etag') as string
    for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const r = handler(new Request('http://a/', { headers: { 'if-none-match': inm } }))
      expect(r.status).toBe(304)
      expect(r.headers.get('etag')).toBe(etag)
      expect(r.headers.get('cache-control')).toBe('public, max-age=30, must-revalidate')
    }
    expect(handler(new Request('http://a/', { headers: { 'if-none-match': '"stale"' } })).status).toBe(200)
    await keys.rotate()
    const after = handler(new Request('http://a/', { headers: { 'if-none-match': etag } }))
    expect(after.status).toBe(200)
    expect(after.headers.get('etag')).not.toBe(etag)
    expect(((await after.json()) as JSONWebKeySet).keys).toHaveLength(2)
  })

  it('HEAD has headers and no body; other methods get 405 with Allow', async () => {
    const handler = jwksFetchHandler(await KeySet.create())
    const head = handler(new Request('http://a/', { method: 'HEAD' }))
    expect(head.status).toBe(200)
    expect(await head.text()).toBe('')
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const r = handler(new Request('http://a/', { method }))
      expect(r.status).toBe(405)
      expect(r.headers.get('allow')).toBe('GET, HEAD')
    }
  })

  it('never serves private or extra members, whatever the provider returns', async () => {
    const keys = await KeySet.create()
    const leaky = () => ({ keys: [{ ...keys.records()[0]!.privateJwk, kid: 'k1', x5c: ['...'] }] })
    const body = (await jwksFetchHandler(leaky)(new Request('http://a/')).json()) as { keys: Array<Record<string, unknown>> }
    expect(Object.keys(body.keys[0]!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'])
  })

  it('validates its options', async () => {
    const keys = await KeySet.create()
    await expectOptionMisuse(() => jwksFetchHandler(keys, { maxAgeSeconds: -1 }), { path: 'options.maxAgeSeconds' })
    await expectOptionMisuse(() => jwksFetchHandler(keys, { maxAgeSeconds: '60' as never }), { path: 'options.maxAgeSeconds' })
    await expectOptionMisuse(() => jwksFetchHandler({} as never), { path: 'provider' })
    await expectOptionMisuse(() => jwksNodeHandler(keys, { maxage: 1 } as never), { path: 'options.maxage' })
    await expectOptionMisuse(() => jwksNodeHandler(keys, { [HOSTILE_KEY]: 1 } as never), { path: `options${HOSTILE_KEY_PATH}` })
  })
})

describe('jwksNodeHandler (real loopback server)', () => {
  let server: Server
  let url: string
  let keys: KeySet
  beforeAll(async () => {
    keys = await KeySet.create()
    const { node } = createJwksHandler(keys, { maxAgeSeconds: 10 })
    server = createServer((req, res) => (req.url === '/jwks.json' ? node(req, res) : res.writeHead(404).end()))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/jwks.json`
  })
  afterAll(() => new Promise<void>((r) => server.close(() => r())))

  it('same headers and semantics as the fetch handler', async () => {
    const res = await fetch(url)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/jwk-set+json')
    expect(res.headers.get('cache-control')).toBe('public, max-age=10, must-revalidate')
    const etag = res.headers.get('etag') as string
    expect(((await res.json()) as JSONWebKeySet).keys[0]?.kid).toBe(keys.active().kid)
    const again = await fetch(url, { headers: { 'if-none-match': etag } })
    expect(again.status).toBe(304)
    expect((await fetch(url, { method: 'POST' })).status).toBe(405)
    const head = await fetch(url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('etag')).toBe(etag)
  })
})
