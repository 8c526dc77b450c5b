/**
 * The Redis store's replication acknowledgement (`replicas: { acks, timeoutMs }`): option
 * validation and the pure decision on the reply of `WAIT numreplicas timeout`.
 *
 * Redis replication is asynchronous: a write the master answered may not have reached any
 * replica, and a failover to such a replica loses it. `WAIT` (sent on the connection that
 * made the write, right after it) blocks until `acks` replicas confirm every earlier write
 * of that connection or `timeoutMs` passes, and returns how many did. Fewer than `acks` is
 * treated as a failed write: a consuming check denies, a revocation rejects. `WAIT` is not
 * consensus: a failover can still pick a replica that did not acknowledge (see docs/stores.md).
 */
import { ConfigInvalid, StoreUnavailable } from '../errors.js'

/** Replica acknowledgement of every write the store makes. */
export interface ReplicaAcksOptions {
  /** Replicas that must confirm each write, at least 1 (`WAIT <acks> ...`). */
  readonly acks: number
  /**
   * How long a write waits for them, in milliseconds (`WAIT ... <timeoutMs>`): 1 to 60000,
   * and below the store's `commandTimeoutMs` (the bound on the whole call, write + wait).
   */
  readonly timeoutMs: number
}

/** Upper bound on `acks`: a master with more replicas than this is not a deployment we target. */
export const MAX_ACKS = 64
/** Upper bound on `timeoutMs` (the same as on every store timeout). */
export const MAX_ACK_TIMEOUT_MS = 60_000

/**
 * Validate the `replicas` option. `undefined` means no acknowledgement (writes are
 * answered by the master alone). Anything malformed is `ERR_CONFIG_INVALID`: a typo must not
 * silently turn the guarantee off.
 */
export function parseReplicaAcks(value: unknown, commandTimeoutMs: number): ReplicaAcksOptions | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigInvalid('"replicas" must be an object { acks, timeoutMs }', { details: { rule: 'replicas' } })
  const o = value as Record<string, unknown>
  for (const k of Object.keys(o))
    if (k !== 'acks' && k !== 'timeoutMs')
      throw new ConfigInvalid('"replicas" accepts only "acks" and "timeoutMs"', { details: { rule: 'replicas' } })
  const { acks, timeoutMs } = o
  if (typeof acks !== 'number' || !Number.isInteger(acks) || acks < 1 || acks > MAX_ACKS)
    throw new ConfigInvalid(`"replicas.acks" must be an integer from 1 to ${MAX_ACKS}`, { details: { rule: 'replicas.acks' } })
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_ACK_TIMEOUT_MS)
    throw new ConfigInvalid(`"replicas.timeoutMs" must be an integer number of milliseconds from 1 to ${MAX_ACK_TIMEOUT_MS}`, {
      details: { rule: 'replicas.timeoutMs' },
    })
  // The call's own deadline covers the write and the wait: a wait as long as the deadline
  // would end every unacknowledged write as outcome-unknown instead of not-replicated.
  if (timeoutMs >= commandTimeoutMs)
    throw new ConfigInvalid('"replicas.timeoutMs" must be below "commandTimeoutMs"; raise commandTimeoutMs or lower the wait', {
      details: { rule: 'replicas.timeoutMs' },
    })
  return Object.freeze({ acks, timeoutMs })
}

/** The pure decision: `WAIT`'s reply against the required count. Anything but an integer >= acks fails closed. */
export function replicationDecision(acknowledged: unknown, required: number): 'ok' | 'not-replicated' {
  return typeof acknowledged === 'number' && Number.isInteger(acknowledged) && acknowledged >= required ? 'ok' : 'not-replicated'
}

/** The error of a write that fewer than `acks` replicas confirmed in time. */
export function notReplicated(what: 'check' | 'revocation' | 'lineage', acknowledged: unknown, r: ReplicaAcksOptions): StoreUnavailable {
  const outcome =
    what === 'check'
      ? 'the token was not accepted (its jti may be consumed on the master)'
      : what === 'revocation'
        ? 'the revocation is applied on the master but may be lost in a failover; retry it (it is idempotent)'
        : 'the spawn was refused (its record may remain on the master)'
  return new StoreUnavailable(
    `the store write was acknowledged by fewer than ${r.acks} replica(s) within ${r.timeoutMs} ms: ${outcome}. ` +
      'Check the replicas and the replication link (INFO replication), or lower "replicas.acks".',
    {
      details: {
        rule: 'not-replicated',
        required: r.acks,
        acknowledged: typeof acknowledged === 'number' ? acknowledged : -1,
      },
    },
  )
}
