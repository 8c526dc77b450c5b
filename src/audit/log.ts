/**
 * The hash-chained audit log: `record()` sanitizes, chains and queues an event for every
 * sink without waiting; a background flush writes batches; `commit()` waits for every sink
 * (durable decisions); `close()` writes the seal. One log instance is one chain.
 */
import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import {
  auditDigest,
  HmacKeySchema,
  chainCanonical,
  GENESIS_PREV,
  lineOf,
  sanitizeAuditInput,
  SEAL_NOTE,
  type AuditDigest,
  type AuditHead,
} from './chain.js'
import { AuditUnavailable } from '../errors.js'
import { fn, parseOptions, withMethods } from '../lib/options.js'
import { fileSink, type AuditRecord, type AuditSink } from './sinks.js'
import type { AuditEventInput } from './types.js'
import type { AuditLogOptions, AuditLogStats, ChainedAuditLog } from './log-types.js'

/** Default file when no sink is given: `AGENT_TRUST_AUDIT_FILE`, else this, in the working directory. */
export const DEFAULT_AUDIT_FILE = 'agent-trust-audit.jsonl'

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

/** {@link AuditLogOptions}, checked once when the log is built. */
const AuditLogOptionsSchema = z
  .strictObject({
    sinks: z.array(withMethods<AuditSink>('write', 'close')).min(1, 'needs at least one sink').readonly().optional(),
    chainId: z.string().regex(CHAIN_ID, 'expected 1-128 chars of [A-Za-z0-9._:@/-]').optional(),
    flushIntervalMs: z.int().min(1).max(60_000).optional(),
    batchSize: z.int().min(1).optional(),
    maxPendingEvents: z.int().min(1).optional(),
    hmacKey: HmacKeySchema.optional(),
    onError: fn<(error: Error, sink: string) => void>().optional(),
    onAuditFailure: z.enum(['allow', 'deny']).optional(),
    durable: z.boolean().optional(),
  })
  .refine((o) => (o.maxPendingEvents ?? 100_000) >= (o.batchSize ?? 2048), {
    path: ['maxPendingEvents'],
    message: 'expected an integer >= batchSize',
  })

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
    const o = parseOptions('createAuditLog', AuditLogOptionsSchema, options)
    const {
      chainId = randomUUID(),
      flushIntervalMs = 100,
      batchSize = 2048,
      maxPendingEvents = 100_000,
      hmacKey,
      onError,
      onAuditFailure = 'allow',
      durable = false,
    } = o
    // The default file is opened only once the options are known to be valid.
    const sinks = o.sinks ?? [fileSink(process.env.AGENT_TRUST_AUDIT_FILE || DEFAULT_AUDIT_FILE)]
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
