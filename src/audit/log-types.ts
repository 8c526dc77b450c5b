/** The options and the face of a hash-chained audit log (built in `./log.ts`). */
import type { AuditHead } from './chain.js'
import type { AuditSink } from './sinks.js'
import type { AuditEventInput, AuditLog } from './types.js'

export interface AuditLogOptions {
  /** Where lines go; several at once. Default: one {@link fileSink} on `AGENT_TRUST_AUDIT_FILE` or `agent-trust-audit.jsonl`. */
  readonly sinks?: readonly AuditSink[]
  /** This log's chain id. Default: a random UUID. Never share one between two live logs. */
  readonly chainId?: string
  /**
   * How often (milliseconds) queued events are written (and, for the file sink, synced).
   * Bounds what a crash loses: events of the last interval plus one batch in flight.
   * Default 100, range 1-60000.
   */
  readonly flushIntervalMs?: number
  /** Write early once this many events wait for a sink. Default 2048. */
  readonly batchSize?: number
  /** Per sink: events kept while it fails; beyond this new events are dropped and counted. Default 100000. */
  readonly maxPendingEvents?: number
  /**
   * Key the chain with HMAC-SHA-256 (>= 16 bytes). Without the key an attacker who can
   * write the file cannot re-hash an edited chain; verification then needs the key.
   */
  readonly hmacKey?: string | Uint8Array
  /** Told about every failed batch. Default: one process warning per failure streak per sink. */
  readonly onError?: (error: Error, sink: string) => void
  /**
   * What decisions do while the trail cannot be written (a sink's last write failed, until a
   * retry succeeds; or the log is closed). `'allow'` (default): calls go on, events are kept
   * and retried (then dropped and counted). `'deny'`: the authority, verifiers and the
   * adapters through them refuse every call with `ERR_AUDIT_UNAVAILABLE` (503) meanwhile;
   * denials are still recorded. Calls made before the first failed write are allowed (their
   * events are in the batch being retried): use `durable` to close that window.
   */
  readonly onAuditFailure?: 'allow' | 'deny'
  /**
   * The authority answers a mint, exchange, spawn or trust-change decision only once its
   * event is written (and, for the file sink, `fdatasync`ed) by every sink; if a sink fails
   * first, the call is refused `ERR_AUDIT_UNAVAILABLE`. Costs a write per batch of
   * concurrent decisions. Verifier (tool call) events stay batched. Default false.
   */
  readonly durable?: boolean
}

export interface AuditSinkStats {
  readonly name: string
  /** Events this sink has accepted. */
  readonly written: number
  /** Events waiting (including a failed batch being retried). */
  readonly pending: number
  /** Events this sink will never get (its queue overflowed while it failed). */
  readonly dropped: number
  /** Failed batches. */
  readonly failures: number
  /** The last failure's message (a path or a Redis error; never event content). */
  readonly lastError?: string
  /** The last write failed (and no retry has succeeded yet). */
  readonly failing: boolean
}

export interface AuditLogStats {
  readonly chainId: string
  /** Events chained so far (the next seq). */
  readonly recorded: number
  /** Events dropped by any sink, plus events recorded after `close()`. */
  readonly dropped: number
  /** Events recorded after `close()` (not chained). */
  readonly afterClose: number
  /** `record()` calls that failed inside the log (should stay 0). */
  readonly internalErrors: number
  /** Every sink's last write succeeded (or none was tried yet) and the log is open. */
  readonly writable: boolean
  readonly sinks: readonly AuditSinkStats[]
}

/** What {@link createAuditLog} returns. */
export interface ChainedAuditLog extends AuditLog {
  readonly chainId: string
  /** Synchronous, never throws, never waits on I/O. */
  record(event: AuditEventInput): void
  /** With `onAuditFailure: 'deny'`: throws `ERR_AUDIT_UNAVAILABLE` while the trail cannot be written. */
  admit(): void
  readonly durable: boolean
  /** Record and wait until every sink has written the event (rejects `ERR_AUDIT_UNAVAILABLE` if one fails first). */
  commit(event: AuditEventInput): Promise<void>
  /** Where the chain stands now: store it elsewhere to detect a rewritten or cut trail. */
  head(): AuditHead
  stats(): AuditLogStats
  /** Write everything recorded so far to every sink and wait (a failing sink is left to retry). */
  flush(): Promise<void>
  /** Append the seal, flush, close the sinks. Later `record()` calls are counted and ignored. */
  close(): Promise<void>
}
