/**
 * Several authority replicas behind one name: they share the CA, the signing keys and the
 * replay/revocation state. A client fails over from one to the other while tokens keep
 * verifying, and a revocation made on one replica is enforced by the other.
 *
 * Two back ends: the shared Redis (REDIS_URL; under CI=true it must be up) and, always, one
 * in-memory store and key store shared in this process (the same contracts).
 */
import { Socket } from 'node:net'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CertificateAuthority } from 'agent-trust/identity'
import {
  createKeyManager,
  createVerifier,
  MemoryKeyStore,
  MemoryReplayRevocationStore,
  type KeyStore,
  type ReplayRevocationStore,
  type Verifier,
} from 'agent-trust'
import { createAuthorityClient } from 'agent-trust/authority-service'
import { RedisKeyStore } from 'agent-trust/keys/redis'
import { RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { CONTEXT, makeCa, READ, READ_SCOPE } from '../support/identity.js'
import { startService, type ServiceFixture } from '../support/authority-service.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const CI = process.env.CI === 'true'
const PREFIX = `at-test-replicas-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

function redisUp(): Promise<boolean> {
  const u = new URL(REDIS_URL)
  return new Promise((resolve) => {
    const s = new Socket()
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(500, () => done(false))
    s.once('error', () => done(false))
    s.connect(Number(u.port || 6379), u.hostname || '127.0.0.1', () => s.write('PING\r\n'))
    s.once('data', (d) => done(d.toString().startsWith('+PONG')))
  })
}
const redisAvailable = await redisUp()

interface Backend {
  readonly name: string
  readonly enabled: boolean
  make(): Promise<{
    stores: [ReplayRevocationStore, ReplayRevocationStore, ReplayRevocationStore]
    keyStores: [KeyStore, KeyStore]
    cleanup(): Promise<void>
  }>
}

const backends: Backend[] = [
  {
    name: 'one in-memory store shared in process',
    enabled: true,
    async make() {
      const store = new MemoryReplayRevocationStore()
      const keys = new MemoryKeyStore()
      return { stores: [store, store, store], keyStores: [keys, keys], cleanup: async () => undefined }
    },
  },
  {
    name: 'Redis (RedisReplayRevocationStore + RedisKeyStore)',
    enabled: redisAvailable || CI,
    async make() {
      const open = () => new RedisReplayRevocationStore({ url: REDIS_URL, prefix: `${PREFIX}-rev` })
      const stores: [ReplayRevocationStore, ReplayRevocationStore, ReplayRevocationStore] = [open(), open(), open()]
      const keyStores: [RedisKeyStore, RedisKeyStore] = [
        new RedisKeyStore({ url: REDIS_URL, prefix: `${PREFIX}-keys` }),
        new RedisKeyStore({ url: REDIS_URL, prefix: `${PREFIX}-keys` }),
      ]
      return {
        stores,
        keyStores,
        async cleanup() {
          await Promise.all([...stores.map((s) => s.close()), ...keyStores.map((k) => k.close())])
          const r = new Redis(REDIS_URL)
          try {
            let cursor = '0'
            do {
              const [next, keys] = await r.scan(cursor, 'MATCH', `*${PREFIX}*`, 'COUNT', 500)
              if (keys.length > 0) await r.del(...keys)
              cursor = next
            } while (cursor !== '0')
          } finally {
            r.disconnect()
          }
        },
      }
    },
  },
]

describe.each(backends)('authority replicas: $name', (backend) => {
  if (!backend.enabled) {
    it.skip('Redis is not reachable (set CI=true to make this a failure)', () => undefined)
    return
  }
  let a: ServiceFixture
  let b: ServiceFixture
  let verifier: Verifier
  let cleanup: () => Promise<void>

  beforeAll(async () => {
    const made = await backend.make()
    cleanup = made.cleanup
    const ca = await makeCa()
    const caB = await CertificateAuthority.load(await ca.export())
    // Each replica loads the keys from the shared key store: the first one creates them.
    const keysA = (await createKeyManager({ store: made.keyStores[0] })).keys
    const keysB = (await createKeyManager({ store: made.keyStores[1] })).keys
    a = await startService({ ca, store: made.stores[0], keys: keysA })
    b = await startService({ ca: caB, store: made.stores[1], keys: keysB })
    // The database reader in its own process would read the JWKS from either replica and share the store.
    verifier = createVerifier({
      id: 'agent-database-reader',
      issuers: [{ issuer: a.authority.id, jwks: a.authority.jwks() }],
      store: made.stores[2],
      mode: 'enforce',
    })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    await cleanup?.()
  })

  const mintReq = (subject: string) => ({
    subject,
    audience: 'agent-database-reader',
    scope: [READ_SCOPE],
    operation: 'read' as const,
    context: CONTEXT,
  })

  it('publishes one JWKS from both replicas', () => {
    expect(b.authority.jwks()).toEqual(a.authority.jwks())
  })

  it('enforces a revocation made on one replica on the other, even though it never heard of it', async () => {
    const orchestrator = await a.credentials('agent-orchestrator')
    const onA = a.client(orchestrator)
    const earlier = await onA.mint(mintReq('agent-orchestrator'))
    const alice = await b.credentials('alice', 'operator')
    await b.client(alice).revokeAgent('agent-orchestrator')
    expect(a.authority.agent('agent-orchestrator')?.revoked).toBe(false)
    // With Redis the identity revocation is shared, so A refuses the certificate itself;
    // with separate memory certificate stores A refuses the agent through the shared quarantine.
    await expect(onA.mint(mintReq('agent-orchestrator'))).rejects.toMatchObject({
      code: backend.name.startsWith('Redis') ? 'ERR_PEER_UNAUTHENTICATED' : 'ERR_AGENT_REVOKED',
    })
    await expect(
      verifier.verify(earlier, { ...READ, peer: { agentId: 'agent-orchestrator', certificateThumbprint: orchestrator.issued.thumbprint } }),
    ).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
  })

  it('fails over from one replica to the other while tokens keep verifying', async () => {
    const summarizer = await a.credentials('agent-summarizer-v2')
    const peer = { agentId: 'agent-summarizer-v2', certificateThumbprint: summarizer.issued.thumbprint }
    const client = createAuthorityClient({ url: [a.url, b.url], tls: summarizer, timeoutMs: 2000 })
    try {
      const fromA = await client.mint(mintReq('agent-summarizer-v2'))
      const fromA2 = await client.mint(mintReq('agent-summarizer-v2'))
      await expect(verifier.verify(fromA, { ...READ, peer })).resolves.toMatchObject({ presenter: 'agent-summarizer-v2' })
      await a.service.close()
      const fromB = await client.mint(mintReq('agent-summarizer-v2'))
      await expect(verifier.verify(fromB, { ...READ, peer })).resolves.toMatchObject({ presenter: 'agent-summarizer-v2' })
      // A token the lost replica minted still verifies, and replay is still caught across replicas.
      await expect(verifier.verify(fromA2, { ...READ, peer })).resolves.toMatchObject({ presenter: 'agent-summarizer-v2' })
      await expect(verifier.verify(fromB, { ...READ, peer })).rejects.toMatchObject({ code: 'ERR_TOKEN_REPLAYED' })
    } finally {
      await client.close()
    }
  })

  it('denies with ERR_AUTHORITY_UNAVAILABLE when no replica answers', async () => {
    await b.service.close()
    const creds = await b.credentials('agent-summarizer-v2')
    const client = createAuthorityClient({ url: [a.url, b.url], tls: creds, timeoutMs: 1000 })
    try {
      await expect(client.mint(mintReq('agent-summarizer-v2'))).rejects.toMatchObject({ code: 'ERR_AUTHORITY_UNAVAILABLE' })
    } finally {
      await client.close()
    }
  })
})
