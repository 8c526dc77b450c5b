/**
 * Verify with the Redis store, at 1 and at 64 calls in flight, against
 * the floor of `node:crypto.verify` plus the same Lua round trip (raw ioredis EVALSHA of the
 * store's check script, same arguments), measured the same way and interleaved.
 * Needs Redis at REDIS_URL (default redis://127.0.0.1:6379); skipped with a warning otherwise.
 */
import { randomUUID, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
import { Redis } from 'ioredis'
import { Authority, createVerifier, MemoryReplayRevocationStore } from 'agent-trust'
import { CHECK_SCRIPT, createRedisStore, failClosedRedisOptions, shardTag, TRUST_STATES_SCRIPT } from 'agent-trust/revocation/redis'
import { compare, inFlightMedians, row, type Row } from './lib.js'
import { sharedRedisUp } from '../test/support/redis.js'

const URL_ = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const IN_FLIGHT = 64
const BATCH = 2000
const BATCHES = 9

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `{${prefix}:*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await redis.unlink(...keys)
  } while (cursor !== '0')
}

export async function benchRedis(): Promise<Row[]> {
  if (!(await sharedRedisUp())) {
    console.warn(`bench redis: skipped, no Redis at ${URL_}`)
    return []
  }
  const prefix = `agent-trust-bench-${process.pid}`
  // A generous bound here: on a loaded machine a 200 ms stall would abort the run; the
  // bound does not change the speed of a call that answers.
  const store = createRedisStore({ url: URL_, prefix, commandTimeoutMs: 5000 })
  // The floor's client: same fail-closed options as the store's own client.
  const raw = new Redis(URL_, failClosedRedisOptions(store.commandTimeoutMs))
  raw.on('error', () => undefined)
  try {
    const authority = await Authority.create({
      manifest: {
        agents: [
          { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:*'] },
          { id: 'agent-database-reader', trustLevel: 'L2' },
        ],
      },
      store,
    })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
    const context = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }
    const scope = 'db:read:documents:namespace:user-123'
    const mintReq = {
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [scope],
      operation: 'read' as const,
      context,
      ttlSeconds: 300,
    }
    const requirement = { scope, operation: 'read' as const }

    // Floor: one signature verification and one EVALSHA of the same script with the same
    // argument shape (jti, no ancestors, one agent, consume) on a fresh jti each time.
    const sample = await authority.mint(mintReq)
    const signingInput = Buffer.from(sample.slice(0, sample.lastIndexOf('.')), 'latin1')
    const signature = Buffer.from(sample.slice(sample.lastIndexOf('.') + 1), 'base64url')
    const publicKey = createPublicKey(authority.keys.active().privateKey)
    if (raw.status !== 'ready') await new Promise((r) => raw.once('ready', r))
    const sha = (await raw.script('LOAD', CHECK_SCRIPT)) as string
    const tag = shardTag(prefix, 0)
    const iat = Math.floor(Date.now() / 1000)
    const floor = (): Promise<unknown> => {
      cryptoVerify('sha256', signingInput, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)
      const jti = randomUUID()
      return raw.evalsha(sha, 1, `${tag}:u:${jti}`, tag, '1', 300_000, iat, randomUUID(), 1, jti, 'agent-summarizer-v2')
    }

    // Single-use tokens: mint them all before timing.
    const pool: string[] = []
    const need = 21 * 200 + 300 + (BATCHES + 1) * BATCH
    for (let i = 0; i < need; i++) pool.push(await authority.mint(mintReq))
    let next = 0
    const op = (): Promise<unknown> => verifier.verify(pool[next++], requirement)

    const rows: Row[] = []
    rows.push(await compare('verify, Redis store, 1 in flight', op, 'node:crypto.verify + Lua round trip', floor))

    // 64 in flight: effective µs per call (1 / throughput), interleaved batches, medians.
    const [opUs, floorUs] = (await inFlightMedians([op, floor], { batch: BATCH, batches: BATCHES, concurrency: IN_FLIGHT })) as [
      number,
      number,
    ]
    const ratio = floorUs / opUs
    rows.push(
      row({
        name: `verify, Redis store, ${IN_FLIGHT} in flight: THROUGHPUT ratio (${Math.round(1e6 / opUs)}/s vs ${Math.round(1e6 / floorUs)}/s)`,
        medianUs: opUs,
        floorName: `node:crypto.verify + Lua round trip, ${IN_FLIGHT} in flight`,
        floorUs,
        ratio,
        target: '>= 0.7x (throughput)',
        pass: ratio >= 0.7,
      }),
    )

    // Mint: the one read a mint makes in the shared store (quarantine of the agents and their
    // ancestors, stored levels, revocation times, the server's clock) against its floor (a
    // node:crypto ES256 signature plus one EVALSHA of the same read), and against the same
    // mint on the memory store (no round trip).
    const manifest = {
      agents: [
        { id: 'orch', trustLevel: 'L3' as const, grants: ['db:read:documents:namespace:*'], maxDelegationDepth: 2 },
        { id: 'agent-database-reader', trustLevel: 'L2' as const },
      ],
    }
    const onRedis = await Authority.create({ manifest, store })
    const inMemory = await Authority.create({ manifest, store: new MemoryReplayRevocationStore() })
    const childDecl = { id: 'orch.worker', trustLevel: 'L2' as const, grants: [scope] }
    await onRedis.spawn({ parent: 'orch', child: childDecl })
    await inMemory.spawn({ parent: 'orch', child: childDecl })
    const childMint = { ...mintReq, subject: 'orch.worker' }
    const statesSha = (await raw.script('LOAD', TRUST_STATES_SCRIPT)) as string
    const privateKey = authority.keys.active().privateKey
    const mintFloor = (): Promise<unknown> => {
      cryptoSign('sha256', signingInput, { key: privateKey, dsaEncoding: 'ieee-p1363' })
      return raw.evalsha(statesSha, 1, `${tag}:tc:seq`, tag, 'orch.worker', 'agent-database-reader', 'orch')
    }
    rows.push(
      await compare(
        'mint, Redis store (spawned child: one read of lineage, levels, clock)',
        () => onRedis.mint(childMint),
        'node:crypto.sign + Lua round trip',
        mintFloor,
      ),
    )
    rows.push(
      await compare(
        'mint, Redis store (spawned child)',
        () => onRedis.mint(childMint),
        'the same mint, memory store',
        () => inMemory.mint(childMint),
      ),
    )
    onRedis.close()
    inMemory.close()
    return rows
  } finally {
    await deletePrefix(raw, prefix).catch(() => undefined)
    raw.disconnect()
    await store.close()
  }
}
