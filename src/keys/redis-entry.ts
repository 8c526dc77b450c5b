/**
 * `agent-trust/keys/redis` as the package publishes it: loads the implementation (`./redis-store.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `ioredis` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '../lib/peer.js'

const m = await loadWithPeers('agent-trust/keys/redis', ['ioredis'], () => import('./redis-store.js'))

export const { RedisKeyStore, jwksOfRecords, keyStoreKeys, redisJwks } = m
