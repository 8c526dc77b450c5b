/**
 * Several authority replicas sharing keys in Redis, and a verifier reading only the
 * public JWKS from Redis (give it a Redis user that can read nothing else: docs/stores.md).
 * Prerequisites: `npm install`, Redis at REDIS_URL (default redis://127.0.0.1:6379).
 */
import { Authority, createKeyManager, createVerifier } from 'agent-trust'
import { RedisKeyStore, redisJwks } from 'agent-trust/keys/redis'
import { Redis } from 'ioredis'

const prefix = `example-keys-${process.pid}`
const manifest = {
  agents: [
    { id: 'agent-summarizer-v2', trustLevel: 'L2' as const, grants: ['db:read:documents:namespace:user-123'] },
    { id: 'agent-database-reader', trustLevel: 'L2' as const },
  ],
}

// Two replicas: they agree on one key set; one rotates under a lock, the other adopts it.
const storeA = new RedisKeyStore({ url: process.env.REDIS_URL, prefix })
const storeB = new RedisKeyStore({ url: process.env.REDIS_URL, prefix })
const [a, b] = await Promise.all([createKeyManager({ store: storeA }), createKeyManager({ store: storeB })])
console.log(`replicas share the active key: ${a.keys.active().kid === b.keys.active().kid}`)
await a.rotateNow({ immediate: true })
await b.sync()
console.log(`after a rotation on A, B signs with A's new key: ${a.keys.active().kid === b.keys.active().kid}`)

// The verifier: public JWKS from Redis, no private key reachable.
const jwks = redisJwks({ url: process.env.REDIS_URL, prefix })
const authorityB = await Authority.create({ manifest, keys: b.keys })
const verifier = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer: authorityB.id, jwks }], mode: 'enforce' })
const scope = 'db:read:documents:namespace:user-123'
const token = await authorityB.mint({
  subject: 'agent-summarizer-v2',
  audience: 'agent-database-reader',
  scope: [scope],
  operation: 'read',
  context: { session_id: 's', user_id: 'user-123', task_id: 't' },
})
await verifier.verify(token, { scope, operation: 'read' })
console.log('allowed  token from replica B, verified with the JWKS published in Redis')

// Tidy up this example's keys.
const admin = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
await admin.del(storeA.keys.private, storeA.keys.jwks, storeA.keys.lock)
admin.disconnect()
await Promise.all([storeA.close(), storeB.close(), jwks.close()])
