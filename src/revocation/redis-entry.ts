/**
 * `agent-trust/revocation/redis` as the package publishes it: loads the implementation (`./redis.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `ioredis` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '../lib/peer.js'

const m = await loadWithPeers('agent-trust/revocation/redis', ['ioredis'], () => import('./redis.js'))

export const {
  CHECK_SCRIPT,
  DEFAULT_STORE_TIMEOUT_MS,
  REVOKE_AGENTS_CHUNK,
  RedisReplayRevocationStore,
  TRUST_STATES_SCRIPT,
  createRedisStore,
  failClosedRedisOptions,
  shardOf,
  shardTag,
} = m
