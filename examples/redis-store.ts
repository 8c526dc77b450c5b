/**
 * Replay and revocation shared through Redis: what several verifier processes and the
 * authority use so that a token is accepted once across all of them and a revocation
 * reaches every one.
 * Prerequisites: `npm install`, Redis at REDIS_URL (default redis://127.0.0.1:6379).
 */
import { Authority, createVerifier } from 'agent-trust'
import { createRedisStore } from 'agent-trust/revocation/redis'
import type { Redis } from 'ioredis'

// One store per process, shared by that process's verifiers and authority.
// `prefix` lets several deployments share one Redis; calls are bounded (200 ms by default).
const store = createRedisStore({ url: process.env.REDIS_URL, prefix: `example-${process.pid}` })

const authority = await Authority.create({
  manifest: {
    agents: [
      { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
      { id: 'agent-database-reader', trustLevel: 'L2' },
    ],
  },
  store,
})
const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
const scope = 'db:read:documents:namespace:user-123'
const mint = () =>
  authority.mint({
    subject: 'agent-summarizer-v2',
    audience: 'agent-database-reader',
    scope: [scope],
    operation: 'read',
    context: { session_id: 's', user_id: 'user-123', task_id: 't' },
  })
const attempt = async (label: string, token: string) => {
  try {
    await verifier.verify(token, { scope, operation: 'read' })
    console.log(`allowed  ${label}`)
  } catch (e) {
    console.log(`denied   ${label}  ${(e as { code: string }).code}`)
  }
}

const token = await mint()
await attempt('first use', token)
await attempt('replay of the same token', token) // ERR_TOKEN_REPLAYED, on every instance sharing the store

const other = await mint()
await authority.revokeAgent('agent-summarizer-v2')
await attempt('token of a revoked agent', other) // ERR_AGENT_REVOKED

// Fail closed: a store that cannot answer denies within its bound instead of hanging.
const down = createRedisStore({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 100 })
const offline = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store: down, mode: 'enforce' })
try {
  await offline.verify(token, { scope, operation: 'read' })
} catch (e) {
  console.log(`denied   while Redis is unreachable  ${(e as { code: string }).code}`)
}

// Tidy up this example's keys (markers and revocations expire by themselves anyway).
const client = store.client as Redis
for await (const keys of client.scanStream({ match: `{example-${process.pid}:*` }))
  if ((keys as string[]).length > 0) await client.unlink(...(keys as string[]))
await down.close()
await store.close()
