/**
 * Revocation reaches every verifier without Redis: a verifier fed by the authority's feed
 * learns a revocation within the stated bound (measured here over real mTLS), and a verifier
 * that lost the feed for longer than the bound fails closed.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createVerifier } from 'agent-trust'
import { RevocationFeed, RevocationFeedStore, type FeedPage, type FeedSource } from 'agent-trust/authority-service'
import { createPeerIdentity, inspectWorkloadCertificate } from 'agent-trust/identity'
import * as x509 from '@peculiar/x509'
import { CONTEXT, READ, READ_SCOPE, TRUST_DOMAIN } from '../support/identity.js'
import { startService, type ServiceFixture } from '../support/authority-service.js'
import { expectOptionMisuse } from '../support/options.js'
import { CI, deleteKeys, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'

const POLL_MS = 50
const BOUND_MS = 1000

const check = (over: Partial<Parameters<RevocationFeedStore['check']>[0]> = {}) => ({
  jti: randomUUID(),
  chain: [],
  agents: ['agent-summarizer-v2'],
  iat: Math.floor(Date.now() / 1000),
  forgetAtMs: Date.now() + 60_000,
  consume: false,
  ...over,
})

async function until(cond: () => Promise<boolean> | boolean, limitMs: number): Promise<number> {
  const t0 = performance.now()
  while (performance.now() - t0 < limitMs * 3) {
    if (await cond()) return performance.now() - t0
    await new Promise((r) => setTimeout(r, 5))
  }
  return Number.POSITIVE_INFINITY
}

describe('the revocation feed over mTLS', () => {
  let f: ServiceFixture
  let feed: RevocationFeedStore
  let summarizer: Awaited<ReturnType<ServiceFixture['credentials']>>

  beforeAll(async () => {
    f = await startService()
    summarizer = await f.credentials('agent-summarizer-v2')
    const verifierCreds = await f.credentials('agent-database-reader')
    feed = await RevocationFeedStore.start({ source: f.client(verifierCreds), pollIntervalMs: POLL_MS, maxStalenessMs: BOUND_MS })
  })
  afterAll(async () => {
    await feed.close()
    await f.close()
  })

  it("carries the authority's keys: a verifier in another process verifies with the feed's JWKS", async () => {
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [feed.trustedIssuer()], store: feed, mode: 'enforce' })
    const token = await f
      .client(summarizer)
      .mint({ subject: 'agent-summarizer-v2', audience: 'agent-database-reader', scope: [READ_SCOPE], operation: 'read', context: CONTEXT })
    await expect(
      verifier.verify(token, { ...READ, peer: { agentId: 'agent-summarizer-v2', certificateThumbprint: summarizer.issued.thumbprint } }),
    ).resolves.toMatchObject({ presenter: 'agent-summarizer-v2' })
  })

  it(`learns a token revocation within the bound (${BOUND_MS} ms): after it, never "ok"`, async () => {
    const jti = randomUUID()
    const t0 = performance.now()
    await f.authority.revokeToken(jti)
    // The guarantee, checked every few ms: past the bound a check is either "revoked" or a denial.
    let learnedAfter = Number.POSITIVE_INFINITY
    while (performance.now() - t0 < 3 * BOUND_MS) {
      const at = performance.now() - t0
      const verdict = await feed.check(check({ jti })).catch((e: { code: string }) => e.code)
      if (verdict === 'ok') expect(at).toBeLessThanOrEqual(BOUND_MS)
      if (verdict === 'token-revoked') {
        learnedAfter = at
        break
      }
      await new Promise((r) => setTimeout(r, 5))
    }
    expect(learnedAfter).toBeLessThan(Number.POSITIVE_INFINITY)
  })

  it('learns an agent revocation and its certificate revocation within the bound', async () => {
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [feed.trustedIssuer()], store: feed, mode: 'enforce' })
    const token = await f
      .client(summarizer)
      .mint({ subject: 'agent-summarizer-v2', audience: 'agent-database-reader', scope: [READ_SCOPE], operation: 'read', context: CONTEXT })
    const cert = inspectWorkloadCertificate(new Uint8Array(x509.PemConverter.decodeFirst(summarizer.cert)), TRUST_DOMAIN)
    expect(feed.certificates.isRevoked(cert)).toBe(false)
    await f.service.revokeAgent('agent-summarizer-v2', { by: 'test' })
    expect(await until(() => feed.certificates.isRevoked(cert), BOUND_MS)).toBeLessThan(Number.POSITIVE_INFINITY)
    expect(
      await until(async () => (await feed.check(check({ iat: Math.floor(Date.now() / 1000) - 1 }))) === 'agent-revoked', BOUND_MS),
    ).toBeLessThan(Number.POSITIVE_INFINITY)
    await expect(
      verifier.verify(token, { ...READ, peer: { agentId: 'agent-summarizer-v2', certificateThumbprint: summarizer.issued.thumbprint } }),
    ).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    const peer = createPeerIdentity({ trustDomain: TRUST_DOMAIN, revocations: feed.certificates })
    expect(peer).toBeTypeOf('function')
  })

  it('fails closed once the feed has been lost for longer than the bound', async () => {
    await f.service.close()
    const t0 = performance.now()
    const denied = await until(async () => {
      try {
        await feed.check(check())
        return false
      } catch (e) {
        expect(e).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE', details: { rule: 'feed-stale' } })
        return true
      }
    }, BOUND_MS)
    expect(denied).toBeLessThan(Number.POSITIVE_INFINITY)
    // Not at once: within the bound the last state is still trusted (exact edges: the clock test below).
    expect(performance.now() - t0).toBeGreaterThan(BOUND_MS / 2)
    expect(() => feed.certificates.isRevoked({ serialNumber: 'aa', spiffeId: 'spiffe://x/agent/y', notBeforeMs: 0 })).toThrow(
      expect.objectContaining({ code: 'ERR_STORE_UNAVAILABLE' }),
    )
  })
})

describe('RevocationFeedStore (deterministic clock)', () => {
  function fakeSource(feed: RevocationFeed) {
    let fail = false
    const source: FeedSource & { fail: (v: boolean) => void; calls: number } = {
      calls: 0,
      fail: (v) => {
        fail = v
      },
      async revocations(since, epoch, options) {
        source.calls++
        if (fail) throw new Error('unreachable')
        return feed.read(since, epoch, 'agent-trust-authority', { keys: [] }, options)
      },
    }
    return source
  }

  it('is fresh right after a poll, stale exactly after maxStalenessMs, fresh again after a successful poll', async () => {
    let now = 0
    const authoritySide = new RevocationFeed()
    const source = fakeSource(authoritySide)
    const store = await RevocationFeedStore.start({ source, pollIntervalMs: 1000, maxStalenessMs: 5000, now: () => now })
    try {
      await expect(store.check(check())).resolves.toBe('ok')
      source.fail(true)
      now = 5000
      await expect(store.check(check())).resolves.toBe('ok')
      now = 5001
      await expect(store.check(check())).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
      await expect(store.syncNow()).rejects.toThrow()
      await expect(store.check(check())).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
      source.fail(false)
      await authoritySide.revokeAgent('agent-summarizer-v2', Math.floor(Date.now() / 1000))
      await store.syncNow()
      await expect(store.check(check({ iat: Math.floor(Date.now() / 1000) - 5 }))).resolves.toBe('agent-revoked')
    } finally {
      await store.close()
    }
  })

  it('refuses to start without a first successful poll', async () => {
    const source = fakeSource(new RevocationFeed())
    source.fail(true)
    await expect(RevocationFeedStore.start({ source })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
  })

  it('reads only new entries, and everything again from a replica with another log (epoch)', async () => {
    const a = new RevocationFeed()
    const b = new RevocationFeed()
    await a.revokeToken(randomUUID(), Date.now() + 60_000)
    const first = await a.read(0, undefined, 'i', { keys: [] })
    expect(first).toMatchObject({ reset: true, cursor: 1 })
    await a.revokeToken(randomUUID(), Date.now() + 60_000)
    expect((await a.read(first.cursor, first.epoch, 'i', { keys: [] })).entries).toHaveLength(1)
    await b.revokeAgent('x', 1)
    const fromB = await b.read(first.cursor, first.epoch, 'i', { keys: [] })
    expect(fromB).toMatchObject({ reset: true })
    expect(fromB.entries).toHaveLength(1)
  })

  it('fails a poll whose pages say "more" without moving a cursor, instead of paging forever', async () => {
    const page = { ...(await new RevocationFeed().read(0, undefined, 'i', { keys: [] })), more: true }
    let calls = 0
    const source = {
      revocations: async () => {
        calls++
        return page
      },
    }
    await expect(RevocationFeedStore.start({ source })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
    // The first page moves the cursors from "nothing read"; the second repeats them.
    expect(calls).toBe(2)
  })

  it('reads a page from a server that predates paging (no more, no certificate cursor) as complete', async () => {
    const { certificateCursor: _c, more: _m, ...old } = await new RevocationFeed().read(0, undefined, 'i', { keys: [] })
    const entries = [{ kind: 'certificate', serialNumber: 'abcd', forgetAtMs: Date.now() + 60_000 }]
    const store = await RevocationFeedStore.start({ source: { revocations: async () => ({ ...old, entries }) as unknown as FeedPage } })
    try {
      expect(store.certificates.isRevoked({ serialNumber: 'abcd', spiffeId: 'spiffe://x/agent/y', notBeforeMs: 0 })).toBe(true)
    } finally {
      await store.close()
    }
  })

  it('treats a malformed page as a failed poll (nothing applied)', async () => {
    let now = 0
    let page: unknown = await new RevocationFeed().read(0, undefined, 'i', { keys: [] })
    const store = await RevocationFeedStore.start({
      source: { revocations: async () => page as FeedPage },
      pollIntervalMs: 1000,
      maxStalenessMs: 5000,
      now: () => now,
    })
    try {
      page = { ...(page as object), entries: [{ kind: 'token', jti: 5 }] }
      await expect(store.syncNow()).rejects.toThrow()
      now = 6000
      await expect(store.check(check())).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
    } finally {
      await store.close()
    }
  })

  it('validates its options', async () => {
    const source = fakeSource(new RevocationFeed())
    await expectOptionMisuse(() => RevocationFeedStore.start({ source, pollIntervalMs: 1000, maxStalenessMs: 1500 }), {
      path: 'maxStalenessMs',
    })
    await expectOptionMisuse(() => RevocationFeedStore.start({ source: {} as FeedSource }), { path: 'source' })
    await expectOptionMisuse(() => RevocationFeedStore.start({ source, pollIntervalMs: 5 }), { path: 'pollIntervalMs' })
    await expectOptionMisuse(() => RevocationFeedStore.start({ source, onError: 'log' as never }), { path: 'onError' })
    await expectOptionMisuse(() => RevocationFeedStore.start({ source, pollInterval: 100 } as never), { path: 'pollInterval' })
  })
})

describe('an authority over the feed keeps the store semantics it would have without it', () => {
  const CHILD = { trustLevel: 'L2' as const, grants: [READ_SCOPE], maxDelegationDepth: 0 }

  it('spawns into the store lineage, and a retirement there is announced in the feed', async () => {
    const { Authority, AGENT_QUARANTINED, MemoryReplayRevocationStore } = await import('agent-trust')
    const { MANIFEST } = await import('../support/identity.js')
    const store = new MemoryReplayRevocationStore()
    const feed = new RevocationFeed(store)
    const authority = await Authority.create({ manifest: MANIFEST, store: feed })
    try {
      await authority.spawn({ parent: 'agent-orchestrator', child: { id: 'feed-child', ...CHILD } })
      // The record is in the store every replica reads, not only in this authority's memory.
      expect(await store.spawnedAgent('feed-child')).toMatchObject({ id: 'feed-child', ancestors: ['agent-orchestrator'] })
      expect(await authority.retire({ parent: 'agent-orchestrator', agentId: 'feed-child' })).toEqual(['feed-child'])
      const page = await feed.read(0, undefined, authority.id, authority.jwks())
      expect(page.entries).toContainEqual(expect.objectContaining({ kind: 'agent', agentId: 'feed-child', atSeconds: AGENT_QUARANTINED }))
      // A quarantine written to the store by another replica refuses this one's descendants too.
      await authority.spawn({ parent: 'agent-orchestrator', child: { id: 'feed-child-2', ...CHILD } })
      await store.revokeAgent('agent-orchestrator', AGENT_QUARANTINED)
      await expect(authority.assertInForce('feed-child-2')).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    } finally {
      authority.close()
    }
  })
})

describe.skipIf(!(await sharedRedisUp()) && !CI)('an authority over the feed on the Redis store', () => {
  it('shares trust changes and lineage with another authority on the same Redis', async () => {
    const { Authority } = await import('agent-trust')
    const { createRedisStore } = await import('agent-trust/revocation/redis')
    const { MANIFEST } = await import('../support/identity.js')
    const prefix = randomPrefix('feed')
    const stores = [createRedisStore({ url: REDIS_URL, prefix }), createRedisStore({ url: REDIS_URL, prefix })]
    const [a, b] = await Promise.all(stores.map((s) => Authority.create({ manifest: MANIFEST, store: new RevocationFeed(s) })))
    try {
      const request = await a!.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L1', reason: 'lower it', requestedBy: 'alice' })
      await b!.syncTrustChanges()
      expect(b!.listTrustChanges().map((r) => r.id)).toContain(request.id)
      await a!.spawn({
        parent: 'agent-orchestrator',
        child: { id: 'redis-feed-child', trustLevel: 'L2', grants: [READ_SCOPE], maxDelegationDepth: 0 },
      })
      await expect(b!.assertInForce('redis-feed-child')).resolves.toBeUndefined()
    } finally {
      a?.close()
      b?.close()
      await deleteKeys(REDIS_URL, `${prefix}*`)
      await Promise.all(stores.map((s) => s.close()))
    }
  })
})
