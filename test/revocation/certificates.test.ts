/**
 * The certificate revocation store: the memory and Redis implementations keep the same
 * contract (keyed status, monotonic writes, paged listing), agree on random sequences, and a
 * feed of more than 100,000 live entries pages so that a new feed client starts.
 */
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { RevocationFeed, RevocationFeedStore } from 'agent-trust/authority-service'
import { MemoryCertificateRevocationStore, type CertificateRevocationStore } from 'agent-trust/identity'
import { RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { CI, deleteKeys, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'

const PREFIX = randomPrefix('certstore')
const redisEnabled = CI || (await sharedRedisUp())
const opened: RedisReplayRevocationStore[] = []
let n = 0

function redisStore(prefix = `${PREFIX}-${n++}`): RedisReplayRevocationStore {
  const s = new RedisReplayRevocationStore({ url: REDIS_URL, prefix, commandTimeoutMs: 5000 })
  opened.push(s)
  return s
}

afterAll(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()))
  if (redisEnabled) await deleteKeys(REDIS_URL, `*${PREFIX}*`)
})

const DAY = 24 * 3600 * 1000
const ID = 'spiffe://agent-trust.test/agent/agent-orchestrator'
const cert = (serialNumber: string, notBeforeMs: number, spiffeId = ID) => ({ serialNumber, spiffeId, notBeforeMs })

async function all(s: CertificateRevocationStore, limit: number, cursor?: string) {
  const entries: unknown[] = []
  let pages = 0
  let page
  do {
    page = await s.page({ cursor, limit })
    entries.push(...page.entries)
    cursor = page.cursor
    pages++
  } while (page.more)
  return { entries, cursor, pages }
}

const impls: Array<{ name: string; enabled: boolean; make: () => CertificateRevocationStore }> = [
  { name: 'memory', enabled: true, make: () => new MemoryCertificateRevocationStore() },
  { name: 'Redis', enabled: redisEnabled, make: () => redisStore().certificateRevocations() },
]

describe.each(impls)('certificate revocation store: $name', ({ enabled, make }) => {
  it.skipIf(!enabled)('revokes a serial until it is forgotten, and nothing else', async () => {
    const s = make()
    const now = Date.now()
    await s.revokeSerial('0A1B', now + DAY)
    await expect(s.status(cert('0a1b', 0), now)).resolves.toBe('serial-revoked')
    await expect(s.status(cert('0a1c', 0), now)).resolves.toBe('good')
    await expect(s.status(cert('0a1b', 0), now + DAY)).resolves.toBe('good')
  })

  it.skipIf(!enabled)('revokes the certificates of an identity issued at or before the revocation', async () => {
    const s = make()
    const at = Date.now()
    await s.revokeIdentity(ID, at, at + DAY)
    await expect(s.status(cert('01', at), at)).resolves.toBe('identity-revoked')
    await expect(s.status(cert('01', at + 1), at)).resolves.toBe('good')
    await expect(s.status(cert('01', at, `${ID}-other`), at)).resolves.toBe('good')
  })

  it.skipIf(!enabled)('is monotonic: a later write with an earlier time shortens nothing', async () => {
    const s = make()
    const at = Date.now()
    await s.revokeIdentity(ID, at, at + 2 * DAY)
    await s.revokeIdentity(ID, at - 60_000, at + DAY)
    await expect(s.status(cert('01', at - 30_000), at + 1.5 * DAY)).resolves.toBe('identity-revoked')
    await s.revokeSerial('ff', at + 2 * DAY)
    await s.revokeSerial('ff', at + 1000)
    await expect(s.status(cert('ff', at + 1), at + 1.5 * DAY)).resolves.toBe('serial-revoked')
    const { entries } = await all(s, 10)
    expect(entries).toEqual(
      expect.arrayContaining([
        { kind: 'identity', spiffeId: ID, atMs: at, forgetAtMs: at + 2 * DAY },
        { kind: 'certificate', serialNumber: 'ff', forgetAtMs: at + 2 * DAY },
      ]),
    )
    expect(entries).toHaveLength(2)
  })

  it.skipIf(!enabled)('pages every entry once, then only newer ones; a foreign cursor starts over', async () => {
    const s = make()
    const now = Date.now()
    for (let i = 0; i < 25; i++) await s.revokeSerial(i.toString(16), now + DAY)
    const first = await all(s, 10)
    expect(first.pages).toBe(3)
    expect(new Set(first.entries.map((e) => (e as { serialNumber: string }).serialNumber)).size).toBe(25)
    expect(first.entries).toHaveLength(25)
    await s.revokeIdentity(ID, now, now + DAY)
    const next = await all(s, 10, first.cursor)
    expect(next.entries).toEqual([{ kind: 'identity', spiffeId: ID, atMs: now, forgetAtMs: now + DAY }])
    expect((await all(s, 100, 'another-epoch.3')).entries).toHaveLength(26)
  })

  it.skipIf(!enabled)('refuses malformed input', async () => {
    const s = make()
    await expect(s.revokeSerial('not-hex', Date.now())).rejects.toThrow(TypeError)
    await expect(s.revokeIdentity('agent-orchestrator', 1, 2)).rejects.toThrow(TypeError)
    await expect(s.revokeIdentity(ID, -1, 2)).rejects.toThrow(TypeError)
  })
})

describe.skipIf(!redisEnabled)('certificate revocations in Redis', () => {
  it('agrees with the memory store on random sequences of revocations and checks', async () => {
    const base = Date.now() + DAY
    const serial = fc.constantFrom('a1', 'b2', 'c3')
    const identity = fc.constantFrom(ID, `${ID}-2`)
    const t = fc.integer({ min: 0, max: 20 }).map((k) => base + k * 1000)
    const op = fc.oneof(
      fc.record({ kind: fc.constant('serial' as const), serial, forget: t }),
      fc.record({ kind: fc.constant('identity' as const), identity, at: t, forget: t }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops) => {
        const m = new MemoryCertificateRevocationStore()
        const r = redisStore().certificateRevocations()
        for (const o of ops) {
          for (const s of [m, r]) {
            if (o.kind === 'serial') await s.revokeSerial(o.serial, o.forget)
            else await s.revokeIdentity(o.identity, o.at, o.forget)
          }
        }
        const sortKey = (e: unknown) => JSON.stringify(e)
        expect((await all(r, 3)).entries.map(sortKey).sort()).toEqual((await all(m, 3)).entries.map(sortKey).sort())
        // Increasing times only: the memory store forgets what a check at a later time finds moot.
        for (let k = 0; k <= 21; k += 3) {
          const now = base + k * 1000
          for (const sn of ['a1', 'b2', 'c3', 'd4'])
            for (const id of [ID, `${ID}-2`])
              for (const nb of [base, base + 7000, base + 21_000]) {
                expect(await r.status(cert(sn, nb, id), now)).toBe(await m.status(cert(sn, nb, id), now))
              }
        }
      }),
      { numRuns: 25 },
    )
  }, 120_000)

  it('pages a feed of more than 100,000 live entries: a new feed client starts and checks by key', async () => {
    const prefix = `${PREFIX}-big`
    const store = redisStore(prefix)
    const certs = store.certificateRevocations()
    const forget = Date.now() + DAY
    await certs.revokeSerial('f00d', forget)
    const tag = `{${prefix}:0}`
    const r = new Redis(REDIS_URL)
    try {
      // Bulk insert in the store's layout: 100,001 more serials, 5,000 per script so that the
      // shared Redis is never blocked long enough to time out other suites' calls.
      for (let from = 1; from <= 100_001; from += 5000)
        await r.eval(
          `for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
             local m = 's:' .. string.format('%x', 1000000 + i)
             local seq = redis.call('INCR', KEYS[4])
             redis.call('HSET', KEYS[1], m, ARGV[3])
             redis.call('ZADD', KEYS[2], ARGV[3], m)
             redis.call('ZADD', KEYS[3], seq, m)
           end
           return 1`,
          4,
          `${tag}:cr`,
          `${tag}:cf`,
          `${tag}:cl`,
          `${tag}:cn`,
          from,
          Math.min(from + 4999, 100_001),
          forget,
        )
    } finally {
      r.disconnect()
    }
    const feed = new RevocationFeed(store)
    let pages = 0
    const client = await RevocationFeedStore.start({
      source: {
        revocations: async (since, epoch, options) => {
          pages++
          return feed.read(since, epoch, 'agent-trust-authority', { keys: [] }, options)
        },
      },
      pollIntervalMs: 60_000,
      maxStalenessMs: 600_000,
    })
    try {
      expect(pages).toBeGreaterThan(20)
      for (const s of ['f00d', (1000000 + 1).toString(16), (1000000 + 100_001).toString(16)])
        expect(client.certificates.isRevoked(cert(s, 0))).toBe(true)
      expect(client.certificates.isRevoked(cert((1000000 + 100_002).toString(16), 0))).toBe(false)
      await expect(certs.status(cert((1000000 + 50_000).toString(16), 0))).resolves.toBe('serial-revoked')
      // Incremental from here: one more revocation is one more entry on the next poll.
      await feed.revokeCertificate('beef', forget)
      pages = 0
      await client.syncNow()
      expect(pages).toBe(1)
      expect(client.certificates.isRevoked(cert('beef', 0))).toBe(true)
    } finally {
      await client.close()
    }
  }, 120_000)
})

describe('identity revocation lifetime', () => {
  it('is the CA limit the identity list keeps', async () => {
    const { IDENTITY_KEEP_MS } = await import('../../src/identity/revocations.js')
    const { IDENTITY_REVOCATION_KEEP_MS } = await import('../../src/revocation/certificates.js')
    expect(IDENTITY_REVOCATION_KEEP_MS).toBe(IDENTITY_KEEP_MS)
  })
})
