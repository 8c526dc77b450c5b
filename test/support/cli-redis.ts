/**
 * The set-up of CLI tests against the shared Redis: a store and an authority on a key prefix
 * of the test's own, and a working directory whose manifest file and environment point the
 * CLI at the same Redis and prefix. Closed by {@link closeRedisCliWorld}, which deletes the keys.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Authority, type ManifestInput } from 'agent-trust'
import { createRedisStore, type RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { cliEnv, workdir } from './cli.js'
import { deleteKeys, REDIS_URL } from './redis.js'

export interface RedisCliWorld {
  readonly store: RedisReplayRevocationStore
  readonly authority: Authority
  readonly dir: string
  readonly env: Record<string, string | undefined>
}

export async function openRedisCliWorld(
  tag: string,
  manifest: ManifestInput,
  prefix: string,
  storeOptions: { commandTimeoutMs?: number } = {},
): Promise<RedisCliWorld> {
  const store = createRedisStore({ url: REDIS_URL, prefix, ...storeOptions })
  const authority = await Authority.create({ manifest, store })
  const dir = workdir(tag)
  const manifestFile = join(dir, 'agent-trust.config.json')
  writeFileSync(manifestFile, JSON.stringify(manifest))
  const env = cliEnv(dir, { REDIS_URL, AGENT_TRUST_REDIS_PREFIX: prefix, AGENT_TRUST_MANIFEST: manifestFile })
  return { store, authority, dir, env }
}

/** Close the store and delete every key under the prefix. */
export async function closeRedisCliWorld(world: RedisCliWorld | undefined, prefix: string): Promise<void> {
  await world?.store.close()
  await deleteKeys(REDIS_URL, `*${prefix}*`)
}
