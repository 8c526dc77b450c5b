/**
 * `agent-trust/audit/redis` as the package publishes it: loads the implementation (`./redis-stream.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `ioredis` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '../lib/peer.js'

const m = await loadWithPeers('agent-trust/audit/redis', ['ioredis'], () => import('./redis-stream.js'))

export const { DEFAULT_AUDIT_STREAM_KEY, auditStreamSeqKey, createRedisStreamSink, readAuditStream } = m
