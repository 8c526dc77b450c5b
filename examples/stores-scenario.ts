/**
 * The demo's "shared state" part: two verifier instances on one Redis, revocation
 * reaching both, fail-closed on an outage, key rotation and a compromised key.
 * Prerequisites: `npm install`; Redis at REDIS_URL (default redis://127.0.0.1:6379) for the
 * Redis steps (skipped with a note if it is not there).
 */
import { Authority, createKeyManager, createVerifier, MemoryKeyStore, type Verifier } from 'agent-trust'
import { createRedisStore, type RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import type { Redis } from 'ioredis'
import { attempt, type Print } from './print.js'
import { CONTEXT, SEED_MANIFEST, SUMMARIZER } from './seed-manifest.js'

const READ = { scope: 'db:read:documents:namespace:user-123', operation: 'read' as const, tool: 'read_documents' }

export async function runStoresScenario(print: Print): Promise<void> {
  const prefix = `agent-trust-demo-${process.pid}`
  const probe = createRedisStore({ url: process.env.REDIS_URL, prefix, commandTimeoutMs: 500 })
  const stores: RedisReplayRevocationStore[] = [probe]
  try {
    const haveRedis = await probe
      .check({ jti: `probe-${process.pid}`, chain: [], agents: [], iat: 0, forgetAtMs: Date.now() + 1000, consume: false })
      .then(
        () => true,
        () => false,
      )
    // Keys: a manager that rotates (24 h by default) and can drop a compromised key at once.
    const manager = await createKeyManager({ store: new MemoryKeyStore() })
    const authority = await Authority.create({ manifest: SEED_MANIFEST, keys: manager.keys, ...(haveRedis ? { store: probe } : {}) })
    await authority.spawn({ parent: 'moltbot-orchestrator', child: SUMMARIZER })
    const mint = async () =>
      (
        await authority.mintForTool({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          tool: 'read_documents',
          args: { namespace: 'user-123' },
          context: CONTEXT,
        })
      ).token

    if (haveRedis) {
      // Two verifier instances, each with its own Redis connection: as two processes would be.
      const instance = (): Verifier => {
        const store = createRedisStore({ url: process.env.REDIS_URL, prefix })
        stores.push(store)
        return createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
      }
      const a = instance()
      const b = instance()
      print('Two database-reader instances share one Redis:')
      const token = await mint()
      await attempt(print, 'summarizer calls instance A', () => a.verify(token, READ))
      await attempt(print, 'the same token replayed against instance B', () => b.verify(token, READ))
      const pending = await mint()
      await authority.revokeAgent('agent-summarizer-v2', { by: 'operator' })
      await attempt(print, 'after the operator revokes the summarizer (on the authority), its token on instance B', () =>
        b.verify(pending, READ),
      )

      print('Redis stops answering: calls are denied within the bound, never waved through:')
      const down = createRedisStore({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 200 })
      stores.push(down)
      const offline = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store: down, mode: 'enforce' })
      await attempt(print, 'a call while the store is unreachable', async () =>
        offline.verify(
          await authority.mint({
            subject: 'moltbot-orchestrator',
            audience: 'agent-database-reader',
            scope: [READ.scope],
            operation: 'read',
            context: CONTEXT,
          }),
          READ,
        ),
      )
    } else {
      print('(no Redis at REDIS_URL: the two-instance steps are skipped; the key steps run in memory)')
    }

    print('Keys rotate; a compromised key is dropped at once:')
    const reader = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'enforce' })
    const orchestratorToken = () =>
      authority.mint({
        subject: 'moltbot-orchestrator',
        audience: 'agent-database-reader',
        scope: [READ.scope],
        operation: 'read',
        context: CONTEXT,
      })
    const oldKid = manager.keys.active().kid
    const signedByOld = await orchestratorToken()
    await manager.rotateNow({ immediate: true })
    await attempt(print, 'a token signed by the new key', async () => reader.verify(await orchestratorToken(), READ))
    await manager.revoke(oldKid)
    await attempt(print, 'a token signed by the compromised (revoked) key', () => reader.verify(signedByOld, READ))
  } finally {
    // Tidy up the demo's keys; markers and revocations expire by themselves anyway.
    const client = probe.client as Redis
    if (probe.ready) {
      for await (const keys of client.scanStream({ match: `{${prefix}:*` }))
        if ((keys as string[]).length > 0) await client.unlink(...(keys as string[]))
    }
    await Promise.all(stores.map((s) => s.close()))
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runStoresScenario((line) => console.log(line))
}
