/**
 * The Redis store's semantics against the shared Redis (REDIS_URL): the same verdicts as the
 * in-memory store (model-based property test), key layout, options, and the verifier and
 * authority wired to it. Every key lives under a random prefix, deleted afterwards.
 */
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AGENT_QUARANTINED, Authority, createVerifier, MemoryReplayRevocationStore, type StoreCheck } from 'agent-trust'
import {
  CHECK_SCRIPT,
  createRedisStore,
  REVOKE_AGENTS_CHUNK,
  shardOf,
  shardTag,
  type RedisReplayRevocationStore,
} from 'agent-trust/revocation/redis'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { CI, deleteKeys, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

const up = await sharedRedisUp()
const PREFIX = randomPrefix('store')

// Skips only outside CI when Redis (or redis-server) is missing; with CI=true it runs and fails instead.
describe.skipIf(!up && !CI)('RedisReplayRevocationStore (shared Redis)', () => {
  const stores: RedisReplayRevocationStore[] = []
  const make = (over: Parameters<typeof createRedisStore>[0] = {}): RedisReplayRevocationStore => {
    // A generous bound: these tests are about semantics; a loaded machine must not flake them.
    const s = createRedisStore({ url: REDIS_URL, prefix: PREFIX, commandTimeoutMs: 5000, ...over })
    stores.push(s)
    return s
  }
  let raw: Redis
  beforeAll(() => {
    raw = new Redis(REDIS_URL)
  })
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()))
    await deleteKeys(REDIS_URL, `{${PREFIX}*`)
    raw.disconnect()
  })

  const now = (): number => Math.floor(Date.now() / 1000)
  const input = (over: Partial<StoreCheck> = {}): StoreCheck => ({
    jti: randomUUID(),
    chain: [],
    agents: ['agent-a'],
    iat: now(),
    forgetAtMs: Date.now() + 60_000,
    consume: true,
    ...over,
  })

  it('consumes a jti exactly once, and a check without consume leaves it unused', async () => {
    const s = make()
    const c = input()
    expect(await s.check({ ...c, consume: false })).toBe('ok')
    expect(await s.check({ ...c, consume: false })).toBe('ok')
    expect(await s.check(c)).toBe('ok')
    expect(await s.check(c)).toBe('replayed')
    expect(await s.check({ ...c, consume: false })).toBe('ok') // exchange-style check does not see replay
  })

  it('the marker expires with the token (PX), not before', async () => {
    const s = make()
    const c = input({ forgetAtMs: Date.now() + 30_000 })
    await s.check(c)
    const pttl = await raw.pttl(`${shardTag(PREFIX, 0)}:u:${c.jti}`)
    expect(pttl).toBeGreaterThan(25_000)
    expect(pttl).toBeLessThanOrEqual(30_000)
  })

  it('revokes a token, and every token whose chain holds it', async () => {
    const s = make()
    const parent = randomUUID()
    await s.revokeToken(parent, Date.now() + 60_000)
    expect(await s.check(input({ jti: parent }))).toBe('token-revoked')
    expect(await s.check(input({ chain: [randomUUID(), parent] }))).toBe('token-revoked')
    expect(await s.check(input({ chain: [randomUUID()] }))).toBe('ok')
  })

  it('a revoked token is denied before replay is considered, and is not consumed', async () => {
    const s = make()
    const c = input()
    await s.revokeToken(c.jti, Date.now() + 60_000)
    expect(await s.check(c)).toBe('token-revoked')
    expect(await raw.exists(`${shardTag(PREFIX, 0)}:u:${c.jti}`)).toBe(0)
  })

  it('revoking a token never shortens an earlier, longer revocation', async () => {
    const s = make()
    const jti = randomUUID()
    await s.revokeToken(jti, Date.now() + 120_000)
    await s.revokeToken(jti, Date.now() + 2_000)
    expect(await raw.pttl(`${shardTag(PREFIX, 0)}:t:${jti}`)).toBeGreaterThan(100_000)
  })

  it('revokes an agent at T: tokens with iat <= T die, later ones live; the latest T wins', async () => {
    const s = make()
    const agent = `agent-${randomUUID()}`
    const t = now()
    await s.revokeAgent(agent, t)
    expect(await s.check(input({ agents: [agent], iat: t }))).toBe('agent-revoked')
    expect(await s.check(input({ agents: [agent], iat: t - 100 }))).toBe('agent-revoked')
    expect(await s.check(input({ agents: [agent], iat: t + 1 }))).toBe('ok')
    await s.revokeAgent(agent, t - 50) // an older revocation does not move T back
    expect(await s.check(input({ agents: [agent], iat: t }))).toBe('agent-revoked')
    await s.revokeAgent(agent, t + 10)
    expect(await s.check(input({ agents: [agent], iat: t + 5 }))).toBe('agent-revoked')
    // an actor anywhere in the delegation chain counts
    expect(await s.check(input({ agents: ['someone-else', agent], iat: t }))).toBe('agent-revoked')
  })

  it('revokeAgents writes, for every id on every shard, what revokeAgent writes (in chunks of REVOKE_AGENTS_CHUNK ids)', async () => {
    const shards = 3
    const one = make({ prefix: `${PREFIX}-many-1`, shards })
    const many = make({ prefix: `${PREFIX}-many-n`, shards })
    const t = now()
    const ids = Array.from({ length: 2 * REVOKE_AGENTS_CHUNK + 7 }, (_, i) => `agent-${i}`)
    const inBatches = async (f: (id: string, i: number) => Promise<unknown>): Promise<void> => {
      for (let i = 0; i < ids.length; i += 100) await Promise.all(ids.slice(i, i + 100).map((id, j) => f(id, i + j)))
    }
    // Prior states, the same under both prefixes: quarantined, revoked later than t, revoked
    // earlier with its key made persistent (no expiry), or none.
    for (const s of [one, many])
      await inBatches(async (id, i) => {
        if (i % 3 === 0) await s.revokeAgent(id, AGENT_QUARANTINED)
        else if (i % 5 === 0) await s.revokeAgent(id, t + 100)
        else if (i % 7 === 0) {
          await s.revokeAgent(id, t - 100)
          for (let k = 0; k < shards; k++) await raw.persist(`${shardTag(s.prefix, k)}:a:${id}`)
        }
      })
    await inBatches((id) => one.revokeAgent(id, t))
    await many.revokeAgents(ids, t)
    await many.revokeAgents([], t)
    for (let k = 0; k < shards; k++) {
      const key = (s: RedisReplayRevocationStore, id: string): string => `${shardTag(s.prefix, k)}:a:${id}`
      const [a, b] = await Promise.all([raw.mget(...ids.map((id) => key(one, id))), raw.mget(...ids.map((id) => key(many, id)))])
      expect(b).toEqual(a)
      for (const [i, v] of b.entries()) expect(Number(v)).toBe(i % 3 === 0 ? AGENT_QUARANTINED : i % 5 === 0 ? t + 100 : t)
      for (const i of [0, 5, 7, 8, ids.length - 1]) {
        const [pa, pb] = await Promise.all([raw.pttl(key(one, ids[i] as string)), raw.pttl(key(many, ids[i] as string))])
        // A persistent key stays persistent; otherwise the longer expiry (a year for a quarantine, a day else).
        if (i % 7 === 0 && i % 3 !== 0 && i % 5 !== 0) expect([pa, pb]).toEqual([-1, -1])
        else expect(Math.abs(pa - pb)).toBeLessThan(60_000)
        if (i % 3 === 0) expect(pb).toBeGreaterThan(360 * 24 * 3600 * 1000)
      }
    }
    expect(await many.check(input({ agents: [ids[1] as string], iat: t }))).toBe('agent-revoked')
    expect(await many.check(input({ agents: [ids[1] as string], iat: t + 1 }))).toBe('ok')
    await expect(many.revokeAgents(['ok', ''], t)).rejects.toThrow(TypeError)
    await expect(many.revokeAgents(['ok'], -1)).rejects.toThrow(TypeError)
  })

  it('agent ids and jtis with Redis-significant characters cannot escape their key', async () => {
    const s = make()
    const evil = 'agent}{x:a:*'
    await s.revokeAgent(evil, now())
    expect(await s.check(input({ agents: [evil] }))).toBe('agent-revoked')
    expect(await s.check(input({ agents: ['agent}{x'] }))).toBe('ok')
    expect(await s.check(input({ agents: ['*'] }))).toBe('ok')
  })

  it('the same answers as the in-memory store, for any sequence of operations (property)', async () => {
    const s = make({ prefix: `${PREFIX}-model` })
    const jtis = Array.from({ length: 6 }, () => randomUUID())
    const agents = ['ag-0', 'ag-1', 'ag-2']
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('check' as const),
        jti: fc.integer({ min: 0, max: 5 }),
        chain: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
        agents: fc.uniqueArray(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 2 }),
        iatOffset: fc.integer({ min: -3, max: 3 }),
        consume: fc.boolean(),
      }),
      fc.record({ kind: fc.constant('revokeToken' as const), jti: fc.integer({ min: 0, max: 5 }) }),
      fc.record({
        kind: fc.constant('revokeAgent' as const),
        agent: fc.integer({ min: 0, max: 2 }),
        atOffset: fc.integer({ min: -3, max: 3 }),
      }),
    )
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        // A fresh namespace per run: the model starts empty too.
        const salt = `r${run++}-`
        const model = new MemoryReplayRevocationStore()
        const base = now()
        for (const o of ops) {
          if (o.kind === 'check') {
            const c: StoreCheck = {
              jti: salt + jtis[o.jti],
              chain: o.chain.map((i) => salt + jtis[i]),
              agents: o.agents.map((i) => salt + agents[i]),
              iat: base + o.iatOffset,
              forgetAtMs: Date.now() + 60_000,
              consume: o.consume,
            }
            expect(await s.check(c)).toBe(await model.check(c))
          } else if (o.kind === 'revokeToken') {
            await Promise.all([
              s.revokeToken(salt + jtis[o.jti], Date.now() + 60_000),
              model.revokeToken(salt + jtis[o.jti], Date.now() + 60_000),
            ])
          } else {
            await Promise.all([
              s.revokeAgent(salt + agents[o.agent], base + o.atOffset),
              model.revokeAgent(salt + agents[o.agent], base + o.atOffset),
            ])
          }
        }
      }),
      { numRuns: 40 },
    )
  })

  it('with shards, a jti always maps to one shard, revocations reach every shard, and replay is still caught', async () => {
    const s = make({ prefix: `${PREFIX}-sharded`, shards: 8, commandTimeoutMs: 10_000 })
    const seen = new Set<number>()
    for (let i = 0; i < 200; i++) seen.add(shardOf(randomUUID(), 8))
    expect(seen.size).toBe(8)
    const parent = randomUUID()
    const agent = `agent-${randomUUID()}`
    await s.revokeToken(parent, Date.now() + 60_000)
    await s.revokeAgent(agent, now())
    for (let i = 0; i < 8; i++) {
      expect(await raw.exists(`${shardTag(`${PREFIX}-sharded`, i)}:t:${parent}`)).toBe(1)
      expect(await raw.exists(`${shardTag(`${PREFIX}-sharded`, i)}:a:${agent}`)).toBe(1)
    }
    const checks = Array.from({ length: 64 }, () => input({ chain: [parent] }))
    expect(new Set(await Promise.all(checks.map((c) => s.check(c))))).toEqual(new Set(['token-revoked']))
    const fresh = Array.from({ length: 64 }, () => input())
    expect(await Promise.all(fresh.map((c) => s.check(c)))).toEqual(fresh.map(() => 'ok'))
    expect(await Promise.all(fresh.map((c) => s.check(c)))).toEqual(fresh.map(() => 'replayed'))
  })

  it('two stores (two connections) sharing a prefix accept a jti exactly once under concurrency', async () => {
    // A generous bound: a burst on a loaded machine must not turn into timeouts here.
    const a = make({ commandTimeoutMs: 10_000 })
    const b = make({ commandTimeoutMs: 10_000 })
    const checks = Array.from({ length: 500 }, () => input())
    const results = await Promise.all(checks.flatMap((c) => [a.check(c), b.check(c)]))
    for (let i = 0; i < checks.length; i++) {
      expect([results[2 * i], results[2 * i + 1]].sort()).toEqual(['ok', 'replayed'])
    }
  })

  it('prefixes isolate deployments', async () => {
    const a = make({ prefix: `${PREFIX}-A` })
    const b = make({ prefix: `${PREFIX}-B` })
    const c = input()
    await a.revokeToken(c.jti, Date.now() + 60_000)
    expect(await b.check(c)).toBe('ok')
    expect(await a.check(c)).toBe('token-revoked')
  })

  it('validates its options when built', async () => {
    const password = 'redis-password-secret'
    await expectOptionMisuse(() => createRedisStore({ prefix: '{x}' }), { path: 'prefix' })
    await expectOptionMisuse(() => createRedisStore({ prefix: '' }), { path: 'prefix' })
    await expectOptionMisuse(() => createRedisStore({ shards: 0 }), { path: 'shards' })
    await expectOptionMisuse(() => createRedisStore({ commandTimeoutMs: 0 }), { path: 'commandTimeoutMs' })
    await expectOptionMisuse(() => createRedisStore({ url: `http://u:${password}@x` }), { path: 'url', secrets: [password] })
    await expectOptionMisuse(() => createRedisStore({ maxQueued: 0 }), { path: 'maxQueued' })
    await expectOptionMisuse(() => createRedisStore({ shard: 2 } as never), { path: 'shard' })
    await expectOptionMisuse(() => createRedisStore({ [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
    await expectOptionMisuse(() => createRedisStore({ url: REDIS_URL, nodes: [{ host: '127.0.0.1', port: 1 }] }), { path: 'options' })
    const prefixed = new Redis(REDIS_URL, { keyPrefix: 'x:', lazyConnect: true })
    await expectOptionMisuse(() => createRedisStore({ redis: prefixed }), { path: 'redis' })
    prefixed.disconnect()
  })

  it("a client passed in stays the caller's: close() does not disconnect it", async () => {
    const mine = new Redis(REDIS_URL, { enableOfflineQueue: false, commandTimeout: 5000 })
    try {
      const s = createRedisStore({ redis: mine, prefix: PREFIX, commandTimeoutMs: 5000 })
      expect(await s.check(input())).toBe('ok')
      await s.close()
      await expect(s.check(input())).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
      expect(await mine.ping()).toBe('PONG')
    } finally {
      mine.disconnect()
    }
  })

  it('after close, every call is denied ERR_STORE_UNAVAILABLE', async () => {
    const s = createRedisStore({ url: REDIS_URL, prefix: PREFIX })
    await s.close()
    await expect(s.check(input())).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
    await expect(s.revokeToken(randomUUID(), Date.now() + 1000)).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
  })

  it('the check script declares only the marker key (revocations are derived, for read-only ACLs)', () => {
    expect(CHECK_SCRIPT).toContain("tag .. ':t:'")
    expect(CHECK_SCRIPT).toContain("tag .. ':a:'")
    expect(CHECK_SCRIPT).not.toMatch(/KEYS\[2\]/)
  })

  describe('through the verifier and the authority', () => {
    it('token, ancestor and agent revocations written by the authority deny the verifier', async () => {
      const store = make()
      const authority = await Authority.create({ manifest: MANIFEST, store })
      const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
      const read = { scope: READ_SCOPE, operation: 'read' as const }
      const mint = (subject = 'agent-summarizer-v2', audience = 'agent-database-reader') =>
        authority.mint({ subject, audience, scope: [READ_SCOPE], operation: 'read', context: CONTEXT })

      const t1 = await mint()
      await expect(verifier.verify(t1, read)).resolves.toBeDefined()
      await expect(verifier.verify(t1, read)).rejects.toMatchObject({ code: 'ERR_TOKEN_REPLAYED' })

      const t2 = await mint()
      await authority.revokeToken(JSON.parse(Buffer.from(t2.split('.')[1]!, 'base64url').toString()).jti)
      await expect(verifier.verify(t2, read)).rejects.toMatchObject({ code: 'ERR_TOKEN_REVOKED' })

      // ancestor: orchestrator's token to the summarizer, exchanged onward to the database reader
      const parent = await authority.mint({
        subject: 'moltbot-orchestrator',
        audience: 'agent-summarizer-v2',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
      const child = await authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })
      await authority.revokeToken(JSON.parse(Buffer.from(parent.split('.')[1]!, 'base64url').toString()).jti)
      await expect(verifier.verify(child, read)).rejects.toMatchObject({ code: 'ERR_TOKEN_REVOKED' })

      const t3 = await mint()
      await authority.revokeAgent('agent-summarizer-v2')
      await expect(verifier.verify(t3, read)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    })
  })
})
