/**
 * The tamper-evident audit trail.
 *
 * Subpath: `agent-trust/audit`.
 *
 * {@link createAuditLog} returns an {@link AuditLog} for the authority, verifiers and
 * adapters. `record()` is synchronous and cheap: it sanitizes the event, chains it (sequence
 * number, previous hash, own hash) and queues one line per sink. A background flush writes
 * the queues in batches; the call path never waits for a disk, a pipe or Redis.
 *
 * Each log instance is one chain with its own id, so several processes may write to one
 * file (or one Redis stream) and each chain still verifies on its own.
 *
 * @example
 * ```ts
 * import { createAuditLog, fileSink, verifyAuditTrail } from 'agent-trust/audit'
 * const audit = createAuditLog({ sinks: [fileSink('/var/log/agent-trust/audit.jsonl')] })
 * const authority = await Authority.create({ manifest, audit })
 * // ... on shutdown
 * await audit.close() // seals the chain
 * const report = await verifyAuditTrail('/var/log/agent-trust/audit.jsonl', { requireSealed: true })
 * ```
 *
 * @module agent-trust/audit
 */
import { randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import {
  AuditTrailVerifier,
  auditDigest,
  chainCanonical,
  GENESIS_PREV,
  lineOf,
  sanitizeAuditInput,
  SEAL_NOTE,
  type AuditDigest,
  type AuditHead,
  type AuditVerification,
  type AuditVerifyOptions,
} from './chain.js'
import { AuditUnavailable } from '../errors.js'
import { fileSink, type AuditRecord, type AuditSink } from './sinks.js'
import type { AuditEventInput, AuditLog } from './types.js'

export { AUDIT_FORMAT_VERSION, AuditTrailVerifier, GENESIS_PREV, SEAL_NOTE, verifyAuditLines } from './chain.js'
export type { AuditBreak, AuditBreakKind, AuditChainReport, AuditEvent, AuditHead, AuditVerification, AuditVerifyOptions } from './chain.js'
export { fileSink, memorySink, stdoutSink } from './sinks.js'
export {
  CHECKPOINT_TYPE,
  createCheckpointSigner,
  readCheckpoints,
  signCheckpoint,
  verifyCheckpoint,
  withCheckpoints,
} from './checkpoint.js'
export type { AuditCheckpoint, CheckpointedLog, CheckpointOptions, CheckpointSigner } from './checkpoint.js'
export type { AuditRecord, AuditSink, FileSinkOptions, StreamSinkOptions } from './sinks.js'
export { discardAudit, MemoryAuditLog } from './types.js'
export type { AuditAction, AuditDecision, AuditEventInput, AuditLog } from './types.js'

/** Default file when no sink is given: `AGENT_TRUST_AUDIT_FILE`, else this, in the working directory. */
export const DEFAULT_AUDIT_FILE = 'agent-trust-audit.jsonl'

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

interface SinkState {
  readonly sink: AuditSink
  queue: AuditRecord[]
  inflight: Promise<void> | undefined
  written: number
  dropped: number
  reportedDrops: number
  failures: number
  failing: boolean
  lastError: string | undefined
  /** The highest seq this sink has written. */
  confirmed: number
}

interface Waiter {
  readonly seq: number
  readonly resolve: () => void
  readonly reject: (e: Error) => void
}

const CHAIN_ID = /^[A-Za-z0-9._:@/-]{1,128}$/

/** A queued event. `line` is built only if a sink asks for it (the file sink encodes from `canonical`). */
class ChainedRecord implements AuditRecord {
  readonly canonical: string
  readonly chainId: string
  readonly seq: number
  readonly hash: string
  #line: string | undefined
  constructor(canonical: string, chainId: string, seq: number, hash: string) {
    this.canonical = canonical
    this.chainId = chainId
    this.seq = seq
    this.hash = hash
  }
  get line(): string {
    return (this.#line ??= lineOf(this.canonical, this.hash))
  }
}

// One exit hook for every open log: write what is queued, synchronously, where a sink can.
const openLogs = new Set<ChainedAuditLogImpl>()
let exitHook = false
function onExit(): void {
  for (const log of openLogs) log.exitFlush()
}

class ChainedAuditLogImpl implements ChainedAuditLog {
  readonly chainId: string
  readonly #digest: AuditDigest
  readonly #sinks: SinkState[]
  readonly #batchSize: number
  readonly #maxPending: number
  readonly #onError: (error: Error, sink: string) => void
  readonly #timer: NodeJS.Timeout
  #seq = 0
  #head = GENESIS_PREV
  #closed = false
  #afterClose = 0
  #internalErrors = 0
  #kicked = false
  #timeMs = -1
  #time = ''
  readonly durable: boolean
  readonly #deny: boolean
  /** Sinks whose last write failed. */
  #failingSinks = 0
  /** `commit()` calls waiting for their event to be written, oldest (lowest seq) first. */
  #waiters: Waiter[] = []

  constructor(options: AuditLogOptions) {
    const {
      sinks = [fileSink(process.env.AGENT_TRUST_AUDIT_FILE || DEFAULT_AUDIT_FILE)],
      chainId = randomUUID(),
      flushIntervalMs = 100,
      batchSize = 2048,
      maxPendingEvents = 100_000,
      hmacKey,
      onError,
      onAuditFailure = 'allow',
      durable = false,
    } = options
    if (!Array.isArray(sinks) || sinks.length === 0) throw new TypeError('createAuditLog needs at least one sink')
    for (const s of sinks)
      if (typeof s?.write !== 'function' || typeof s.close !== 'function') throw new TypeError('each sink needs write() and close()')
    if (typeof chainId !== 'string' || !CHAIN_ID.test(chainId)) throw new TypeError('chainId must be 1-128 chars of [A-Za-z0-9._:@/-]')
    if (!Number.isInteger(flushIntervalMs) || flushIntervalMs < 1 || flushIntervalMs > 60_000)
      throw new TypeError('flushIntervalMs must be an integer from 1 to 60000')
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new TypeError('batchSize must be a positive integer')
    if (!Number.isInteger(maxPendingEvents) || maxPendingEvents < batchSize)
      throw new TypeError('maxPendingEvents must be an integer >= batchSize')
    if (onAuditFailure !== 'allow' && onAuditFailure !== 'deny') throw new TypeError("onAuditFailure must be 'allow' or 'deny'")
    if (typeof durable !== 'boolean') throw new TypeError('durable must be a boolean')
    this.#deny = onAuditFailure === 'deny'
    this.durable = durable
    this.chainId = chainId
    this.#digest = auditDigest(hmacKey)
    this.#batchSize = batchSize
    this.#maxPending = maxPendingEvents
    this.#sinks = sinks.map((sink) => ({
      sink,
      queue: [],
      inflight: undefined,
      written: 0,
      dropped: 0,
      reportedDrops: 0,
      failures: 0,
      failing: false,
      lastError: undefined,
      confirmed: -1,
    }))
    this.#onError = onError ?? warnOncePerStreak(this.#sinks)
    this.#timer = setInterval(() => this.#flushAll(), flushIntervalMs)
    this.#timer.unref()
    openLogs.add(this)
    if (!exitHook) {
      exitHook = true
      process.once('exit', onExit)
    }
  }

  record(event: AuditEventInput): void {
    if (this.#closed) {
      this.#afterClose++
      return
    }
    try {
      this.#append(sanitizeAuditInput(event))
    } catch {
      // A hostile getter or an exotic value: count it; the decision itself already happened.
      this.#internalErrors++
    }
  }

  admit(): void {
    if (!this.#deny || (this.#failingSinks === 0 && !this.#closed)) return
    throw new AuditUnavailable(
      this.#closed
        ? 'the audit log is closed; calls are denied (onAuditFailure: deny)'
        : 'the audit trail cannot be written; calls are denied until a write succeeds (onAuditFailure: deny)',
      { details: { rule: 'onAuditFailure' } },
    )
  }

  commit(event: AuditEventInput): Promise<void> {
    if (!this.durable) {
      this.record(event)
      return Promise.resolve()
    }
    if (this.#closed) return Promise.reject(unavailable('the audit log is closed'))
    let queued: boolean
    try {
      queued = this.#append(sanitizeAuditInput(event))
    } catch (e) {
      this.#internalErrors++
      return Promise.reject(unavailable('the event could not be chained', e))
    }
    // A sink whose queue is full dropped it: it will never be written there.
    if (!queued) return Promise.reject(unavailable('a sink dropped the event (its queue is full while it fails)'))
    const seq = this.#seq - 1
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ seq, resolve, reject })
      this.#kick()
    })
  }

  /** Flush soon (once per turn of the event loop, so concurrent events share a batch). */
  #kick(): void {
    if (this.#kicked) return
    this.#kicked = true
    setImmediate(() => {
      this.#kicked = false
      this.#flushAll()
    })
  }

  /** Resolve the waiters every sink has written; reject those a failing sink has not. */
  #settle(failed?: { sink: SinkState; error: Error }): void {
    if (this.#waiters.length === 0) return
    let written = Number.POSITIVE_INFINITY
    for (const s of this.#sinks) written = Math.min(written, s.confirmed)
    const keep: Waiter[] = []
    for (const w of this.#waiters) {
      if (w.seq <= written) w.resolve()
      else if (failed !== undefined && w.seq > failed.sink.confirmed)
        w.reject(unavailable(`sink ${failed.sink.sink.name} failed (${failed.error.message.slice(0, 200)})`, failed.error))
      else keep.push(w)
    }
    this.#waiters = keep
  }

  /** Chain and queue one event; false if some sink dropped it (queue full). */
  #append(body: Record<string, unknown>): boolean {
    const ms = Date.now()
    if (ms !== this.#timeMs) {
      // Formatting a date costs about a microsecond; events within one millisecond share it.
      this.#timeMs = ms
      this.#time = new Date(ms).toISOString()
    }
    const { canonical, hash } = chainCanonical(body, this.chainId, this.#seq, this.#head, this.#time, this.#digest)
    const rec: AuditRecord = new ChainedRecord(canonical, this.chainId, this.#seq, hash)
    this.#seq++
    this.#head = hash
    let full = false
    let queued = true
    for (const s of this.#sinks) {
      if (s.queue.length >= this.#maxPending) {
        s.dropped++
        queued = false
        continue
      }
      s.queue.push(rec)
      if (s.queue.length >= this.#batchSize) full = true
    }
    if (full) this.#kick()
    return queued
  }

  head(): AuditHead {
    return { chainId: this.chainId, seq: this.#seq - 1, hash: this.#head }
  }

  stats(): AuditLogStats {
    const sinks = this.#sinks.map((s) => ({
      name: s.sink.name,
      written: s.written,
      pending: s.queue.length,
      dropped: s.dropped,
      failures: s.failures,
      failing: s.failing,
      ...(s.lastError === undefined ? {} : { lastError: s.lastError }),
    }))
    return {
      chainId: this.chainId,
      recorded: this.#seq,
      dropped: sinks.reduce((n, s) => n + s.dropped, 0) + this.#afterClose,
      afterClose: this.#afterClose,
      internalErrors: this.#internalErrors,
      writable: this.#failingSinks === 0 && !this.#closed,
      sinks,
    }
  }

  #flushAll(): void {
    for (const s of this.#sinks) if (s.inflight === undefined && s.queue.length > 0) void this.#flushSink(s)
  }

  #flushSink(s: SinkState): Promise<void> {
    if (s.inflight !== undefined) return s.inflight
    const batch = s.queue
    s.queue = []
    // Start the write in a later microtask: a sink that throws synchronously must not settle
    // the batch before `inflight` is set.
    s.inflight = Promise.resolve()
      .then(() => s.sink.write(batch))
      .then(
        () => this.#written(s, batch),
        (e: unknown) => this.#failed(s, batch, e),
      )
      .finally(() => {
        s.inflight = undefined
        // A durable commit queued behind this batch: write it now, not at the next interval.
        if (this.#waiters.length > 0 && !s.failing && s.queue.length > 0) void this.#flushSink(s)
      })
    return s.inflight
  }

  #written(s: SinkState, batch: readonly AuditRecord[]): void {
    s.written += batch.length
    s.confirmed = Math.max(s.confirmed, (batch[batch.length - 1] as AuditRecord).seq)
    if (s.failing) this.#failingSinks--
    s.failing = false
    this.#settle()
    if (s.dropped > s.reportedDrops && !this.#closed) {
      // Say in the chain itself why this sink's copy has a gap.
      const dropped = s.dropped - s.reportedDrops
      s.reportedDrops = s.dropped
      this.#append(
        sanitizeAuditInput(
          { action: 'audit', decision: 'deny', note: `sink ${s.sink.name} dropped ${dropped} event(s) while failing` },
          true,
        ),
      )
    }
  }

  #failed(s: SinkState, batch: AuditRecord[], e: unknown): void {
    s.failures++
    if (!s.failing) this.#failingSinks++
    s.failing = true
    const err = e instanceof Error ? e : new Error(String(e))
    s.lastError = err.message.slice(0, 300)
    this.#settle({ sink: s, error: err })
    // Retry the batch first, newer events after it; what does not fit is dropped, counted.
    const merged = batch.concat(s.queue)
    if (merged.length > this.#maxPending) s.dropped += merged.length - this.#maxPending
    s.queue = merged.length > this.#maxPending ? merged.slice(0, this.#maxPending) : merged
    try {
      this.#onError(err, s.sink.name)
    } catch {
      // The application's handler must not break the log either.
    }
  }

  async flush(): Promise<void> {
    await Promise.all(
      this.#sinks.map(async (s) => {
        for (;;) {
          if (s.inflight !== undefined) {
            await s.inflight
            continue
          }
          if (s.queue.length === 0) return
          const before = s.failures
          await this.#flushSink(s)
          if (s.failures > before) return
        }
      }),
    )
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#append(sanitizeAuditInput({ action: 'audit', decision: 'allow', note: SEAL_NOTE }, true))
    this.#closed = true
    clearInterval(this.#timer)
    await this.flush()
    // Whatever a failing sink still holds will not be written by this log any more.
    for (const w of this.#waiters.splice(0)) w.reject(unavailable('the audit log was closed before the event was written'))
    openLogs.delete(this)
    await Promise.all(this.#sinks.map((s) => s.sink.close().catch(() => undefined)))
  }

  /** At process exit: sinks that can write synchronously get their queue, unless a batch is in flight (its order would be lost). */
  exitFlush(): void {
    for (const s of this.#sinks) {
      if (s.inflight !== undefined || s.queue.length === 0 || s.sink.writeSync === undefined) continue
      try {
        s.sink.writeSync(s.queue)
        s.written += s.queue.length
        s.queue = []
      } catch {
        // Exiting anyway.
      }
    }
  }
}

function unavailable(reason: string, cause?: unknown): AuditUnavailable {
  return new AuditUnavailable(`the decision's audit event was not written (${reason}); the call was refused (durable)`, {
    details: { rule: 'durable' },
    ...(cause === undefined ? {} : { cause }),
  })
}

function warnOncePerStreak(sinks: readonly SinkState[]): (error: Error, sink: string) => void {
  const warned = new Set<string>()
  return (error, name) => {
    const s = sinks.find((x) => x.sink.name === name)
    if (s !== undefined && s.failures > 1 && warned.has(name)) return
    warned.add(name)
    process.emitWarning(
      `agent-trust audit sink ${name} failed (${error.message.slice(0, 200)}); events are kept and retried, then dropped and counted`,
      { code: 'AGENT_TRUST_AUDIT_SINK' },
    )
  }
}

/**
 * Create a hash-chained audit log. `record()` never throws and never blocks; call
 * `close()` on shutdown to write the seal (a chain without a seal may have lost its tail).
 */
export function createAuditLog(options: AuditLogOptions = {}): ChainedAuditLog {
  return new ChainedAuditLogImpl(options)
}

/** A line of a trail file; `complete` is false for a last line without a newline. */
export interface AuditLine {
  readonly text: string
  readonly complete: boolean
}

/** Read a trail file line by line, streaming, from byte `start`. */
export async function* readAuditLines(path: string, options: { start?: number } = {}): AsyncGenerator<AuditLine> {
  let rest = ''
  for await (const chunk of createReadStream(path, { encoding: 'utf8', start: options.start ?? 0, highWaterMark: 1 << 16 })) {
    const text = rest + (chunk as string)
    const parts = text.split('\n')
    rest = parts.pop() as string
    for (const p of parts) yield { text: p, complete: true }
  }
  if (rest.length > 0) yield { text: rest, complete: false }
}

/**
 * Verify a trail: a JSONL file path, or lines (each without its newline) from anywhere,
 * for example a Redis stream read with `readAuditStream` from `agent-trust/audit/redis`.
 * Reports the first broken link per chain and the earliest overall.
 */
export async function verifyAuditTrail(
  source: string | Iterable<string> | AsyncIterable<string>,
  options: AuditVerifyOptions = {},
): Promise<AuditVerification> {
  const v = new AuditTrailVerifier(options)
  if (typeof source === 'string') {
    for await (const l of readAuditLines(source)) v.push(l.text, l.complete)
  } else {
    for await (const l of source) v.push(l)
  }
  return v.finish()
}
