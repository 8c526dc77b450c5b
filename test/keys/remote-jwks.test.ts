/**
 * remoteJwks against a real loopback HTTP server (the JWKS node handler), and redisJwks
 * against the shared Redis: keys imported once, refresh on an unknown kid within the
 * cooldown, background refresh when old, fail closed when too old, private keys refused.
 */
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, createKeyManager, createVerifier, jwksNodeHandler, remoteJwks, type JSONWebKeySet, type Verifier } from 'agent-trust'
import { RedisKeyStore, redisJwks } from 'agent-trust/keys/redis'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { CI, deleteKeys, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

const read = { scope: READ_SCOPE, operation: 'read' as const }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function eventually(fn: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await fn().catch(() => false)) return
    await sleep(25)
  }
  throw new Error('condition not met in time')
}

describe('remoteJwks (loopback HTTP)', () => {
  let server: Server
  let base: string
  let authority: Authority
  let hits = 0
  let mode: 'ok' | 'fail' | 'leak' | 'lead' = 'ok'

  beforeAll(async () => {
    authority = await Authority.create({ manifest: MANIFEST })
    const jwks = jwksNodeHandler(authority)
    server = createServer((req, res) => {
      hits++
      if (mode === 'fail') return void res.writeHead(503).end()
      if (mode === 'leak') {
        // A broken authority that publishes its private key: the verifier must not trust it.
        const leaked = { keys: authority.keys.records().map((r) => ({ ...r.privateJwk, kid: r.kid, alg: 'ES256', use: 'sig' })) }
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(leaked))
      }
      if (mode === 'lead') {
        // A publisher that announces a 200 ms pre-publication lead (RFC 7517 section 5 member).
        const doc = { ...authority.jwks(), prepublish_ms: 200 }
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc))
      }
      jwks(req, res)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}/jwks.json`
  })
  afterAll(() => new Promise<void>((r) => server.close(() => r())))

  const mint = () =>
    authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
  const verifierFor = (source: ReturnType<typeof remoteJwks>): Verifier =>
    createVerifier({ id: 'agent-database-reader', issuers: [{ issuer: authority.id, jwks: source }], mode: 'enforce' })

  it('fetches once, then answers from the same frozen object (keys are not re-imported per call)', async () => {
    mode = 'ok'
    const source = remoteJwks(base, { cacheMaxAgeMs: 60_000, cooldownMs: 60_000 })
    const verifier = verifierFor(source)
    const before = hits
    for (let i = 0; i < 20; i++) await verifier.verify(await mint(), read)
    expect(hits - before).toBe(1)
    const a = await source()
    const b = await source()
    expect(a).toBe(b)
    expect(Object.isFrozen(a)).toBe(true)
  })

  it('an unknown kid triggers one refresh, and the new key is accepted', async () => {
    mode = 'ok'
    const source = remoteJwks(base, { cacheMaxAgeMs: 60_000, cooldownMs: 0 })
    const verifier = verifierFor(source)
    await verifier.verify(await mint(), read)
    await authority.keys.rotate() // immediate: the verifier has never seen this kid
    const before = hits
    await verifier.verify(await mint(), read)
    expect(hits - before).toBe(1)
  })

  it('a flood of unknown kids costs at most one fetch per cooldown', async () => {
    mode = 'ok'
    const source = remoteJwks(base, { cacheMaxAgeMs: 60_000, cooldownMs: 60_000 })
    const verifier = verifierFor(source)
    await verifier.verify(await mint(), read)
    // Tokens from a stranger's keys: unknown kids, all denied.
    const stranger = await Authority.create({ manifest: MANIFEST })
    const forged = await Promise.all(
      Array.from({ length: 50 }, () =>
        stranger.mint({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          scope: [READ_SCOPE],
          operation: 'read',
          context: CONTEXT,
        }),
      ),
    )
    const flood = hits
    const results = await Promise.all(
      forged.map((t) =>
        verifier.verify(t, read).then(
          () => 'ok',
          (e: { code: string }) => e.code,
        ),
      ),
    )
    expect(new Set(results)).toEqual(new Set(['ERR_TOKEN_KEY_UNKNOWN']))
    expect(hits - flood).toBe(0) // fetched moments ago: cooling down
    expect(source.coolingDown).toBe(true)
  })

  it('a revoked key is not trusted past the cache age, even by an idle verifier (first call after it is denied)', async () => {
    mode = 'ok'
    const source = remoteJwks(base, { cacheMaxAgeMs: 100, cooldownMs: 50 })
    const verifier = verifierFor(source)
    const token = await mint()
    const spare = await mint()
    await verifier.verify(token, read)
    await authority.keys.revoke(authority.keys.active().kid) // compromise: a new key signs from now on
    await sleep(150)
    await expect(verifier.verify(spare, read)).rejects.toMatchObject({ code: 'ERR_TOKEN_KEY_UNKNOWN' })
    await verifier.verify(await mint(), read) // the replacement key is trusted
  })

  it('refreshes ahead in the background under steady traffic (calls keep answering from the cache)', async () => {
    mode = 'ok'
    const source = remoteJwks(base, { cacheMaxAgeMs: 600, cooldownMs: 50 })
    await source()
    const before = hits
    const end = Date.now() + 1500
    while (Date.now() < end) {
      const v = source()
      expect(v).not.toBeInstanceOf(Promise) // never waits: refreshed before it expires
      await sleep(20)
    }
    expect(hits - before).toBeGreaterThanOrEqual(2)
  })

  it('fails closed: first fetch failing denies, a copy older than maxStaleMs is dropped, recovery is automatic', async () => {
    mode = 'fail'
    const source = remoteJwks(base, { cacheMaxAgeMs: 50, cooldownMs: 10, maxStaleMs: 150, timeoutMs: 1000 })
    const verifier = verifierFor(source)
    await expect(verifier.verify(await mint(), read)).rejects.toMatchObject({ code: 'ERR_TOKEN_KEY_UNKNOWN' })
    mode = 'ok'
    await eventually(async () => {
      await verifier.verify(await mint(), read)
      return true
    })
    mode = 'fail'
    await sleep(200)
    await expect(verifier.verify(await mint(), read)).rejects.toMatchObject({ code: 'ERR_TOKEN_KEY_UNKNOWN' })
    mode = 'ok'
    await eventually(async () => {
      await verifier.verify(await mint(), read)
      return true
    })
  })

  it('a JWKS that carries private key members is not trusted', async () => {
    mode = 'leak'
    try {
      const verifier = verifierFor(remoteJwks(base, { cooldownMs: 0 }))
      await expect(verifier.verify(await mint(), read)).rejects.toMatchObject({ code: 'ERR_TOKEN_KEY_UNKNOWN' })
    } finally {
      mode = 'ok'
    }
  })

  it('validates its options', async () => {
    const bearer = 'Bearer jwks-fetch-secret-token'
    await expectOptionMisuse(() => remoteJwks('ftp://x/jwks'), { path: 'url' })
    await expectOptionMisuse(() => remoteJwks('https://user:url-secret-pw@'), { path: 'url', secrets: ['url-secret-pw'] })
    await expectOptionMisuse(() => remoteJwks(base, { cacheMaxAgeMs: -1 }), { path: 'options.cacheMaxAgeMs' })
    await expectOptionMisuse(() => remoteJwks(base, { cacheMaxAgeMs: 1000, maxStaleMs: 10 }), { path: 'options.maxStaleMs' })
    await expectOptionMisuse(() => remoteJwks(base, { headers: { authorization: 1 as never } }), { path: 'options.headers.authorization' })
    await expectOptionMisuse(() => remoteJwks(base, { header: { authorization: bearer } } as never), {
      path: 'options.header',
      secrets: [bearer],
    })
    await expectOptionMisuse(() => remoteJwks(base, { [HOSTILE_KEY]: 1 } as never), { path: `options${HOSTILE_KEY_PATH}` })
    await expectOptionMisuse(() => redisJwks({ url: 'redis://:jwks-redis-pw@127.0.0.1:1', cacheMaxAge: 1 } as never), {
      path: 'cacheMaxAge',
      secrets: ['jwks-redis-pw'],
    })
  })

  it('a published prepublish_ms lowers the cache age to half of it, whatever the reader was configured with', async () => {
    mode = 'lead'
    try {
      // Configured: a 60 s cache and no re-read on unknown kids within the test.
      const source = remoteJwks(base, { cacheMaxAgeMs: 60_000, cooldownMs: 3_600_000 })
      await source()
      const before = hits
      // Past 100 ms (half the lead) the copy is too old: calls wait for a re-read.
      for (let i = 0; i < 4; i++) {
        await sleep(130)
        await source()
      }
      expect(hits - before).toBeGreaterThanOrEqual(3)
    } finally {
      mode = 'ok'
    }
  })
})

const up = await sharedRedisUp()

// Skips only outside CI when Redis (or redis-server) is missing; with CI=true it runs and fails instead.
describe.skipIf(!up && !CI)('redisJwks (shared Redis)', () => {
  const prefix = randomPrefix('jwks')
  const closers: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const c of closers) await c()
    await deleteKeys(REDIS_URL, `{${prefix}*`)
  })

  it("verifiers read the public JWKS the authority's key manager publishes, and pick up rotations", async () => {
    const store = new RedisKeyStore({ url: REDIS_URL, prefix, commandTimeoutMs: 5000 })
    const jwks = redisJwks({ url: REDIS_URL, prefix, cacheMaxAgeMs: 60_000, cooldownMs: 0, commandTimeoutMs: 5000 })
    closers.push(
      () => store.close(),
      () => jwks.close(),
    )
    const manager = await createKeyManager({ store })
    const authority = await Authority.create({ manifest: MANIFEST, keys: manager.keys })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer: authority.id, jwks }], mode: 'enforce' })
    const mint = () =>
      authority.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
    await verifier.verify(await mint(), read)
    await manager.rotateNow({ immediate: true })
    await verifier.verify(await mint(), read) // unknown kid -> re-read -> accepted
    const published = (await jwks()) as JSONWebKeySet
    expect(published.keys).toHaveLength(2)
    for (const k of published.keys) expect(k).not.toHaveProperty('d')
  })
})
