/**
 * Internal: one ioredis connection (standalone, Sentinel or Cluster) with fail-closed
 * defaults, and a deadline wrapper that turns every failure into `ERR_STORE_UNAVAILABLE`.
 * Shared by the revocation store and the Redis key store. Never exported from the package.
 */
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis'
import { z } from 'zod'
import { StoreBusy, StoreUnavailable } from '../errors.js'
import { optionProblem, withMethods } from './options.js'

/** How a component reaches Redis: pass exactly one of `redis`, `url`, `nodes`, `sentinels`. */
export interface RedisConnectionOptions {
  /** `redis://` or `rediss://` URL of a standalone server. Default: `REDIS_URL`, else `redis://127.0.0.1:6379`. */
  readonly url?: string
  /**
   * A client you built yourself (e.g. with options this type does not expose). You keep
   * ownership: `close()` leaves it connected. The deadline still applies to every call,
   * but give it `enableOfflineQueue: false` and a `commandTimeout` too (see {@link failClosedRedisOptions}).
   */
  readonly redis?: Redis | Cluster
  /** Redis Cluster seed nodes: a Cluster client is created with fail-closed options. */
  readonly nodes?: readonly ClusterNode[]
  /** Redis Sentinel: the sentinels and the monitored master's `name`. */
  readonly sentinels?: ReadonlyArray<{ host: string; port: number }>
  /** The master name Sentinel monitors (with `sentinels`). */
  readonly name?: string
  /** Extra ioredis options for clients created here (username, password, tls, db...). The fail-closed settings win. */
  readonly redisOptions?: RedisOptions
}

/** Reconnect quickly after an outage, but never hammer a dead server: 100 ms, 200 ms, ... capped at 1 s. */
function reconnectDelay(times: number): number {
  return Math.min(times * 100, 1000)
}

/**
 * The ioredis options agent-trust uses for the clients it creates: a bounded command
 * timeout, no offline queue (a call during an outage fails at once instead of waiting for
 * the reconnection), no re-sending of commands after a reconnect (a timed-out consume was
 * already reported as a denial), and endless reconnection with a capped back-off.
 */
export function failClosedRedisOptions(commandTimeoutMs: number): RedisOptions {
  return {
    // A backstop only: the connection's own deadline (which lets arrived replies be read first) decides.
    commandTimeout: commandTimeoutMs * 2 + 100,
    connectTimeout: Math.max(1000, commandTimeoutMs * 5),
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  }
}

/**
 * How the connection checks below name the factory: the stores check their options with a
 * schema first ({@link RedisConnectionShape}); these stay for the stores that share a
 * connection, and so no caller can build one that is not fail-closed.
 */
const STORE = 'Redis store'

/** The connection and admission options every Redis store takes, for its options schema. A URL or password is never echoed. */
export const RedisConnectionShape = {
  url: z
    .string()
    .regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL')
    .optional(),
  redis: withMethods<Redis | Cluster>('defineCommand').optional(),
  nodes: z.array(z.unknown()).min(1, 'expected at least one cluster node').readonly().optional(),
  sentinels: z
    .array(z.looseObject({ host: z.string(), port: z.int() }))
    .min(1)
    .readonly()
    .optional(),
  name: z.string().min(1).optional(),
  redisOptions: z.record(z.string(), z.unknown()).optional(),
  maxInFlight: z.int().min(1).max(100_000).optional(),
  maxQueued: z.int().min(1).max(1_000_000).optional(),
  deadAfterTimeouts: z.int().min(1).max(1000).optional(),
}

export function assertTimeout(ms: unknown, name: string): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > 60_000)
    throw optionProblem(STORE, [name], 'expected an integer number of milliseconds from 1 to 60000')
  return ms
}

function busy(rule: string): StoreBusy {
  return new StoreBusy(undefined, { details: { rule, retryable: true } })
}

function unavailable(rule: string, cause?: unknown): StoreUnavailable {
  // ioredis error messages name hosts and commands, never values we sent; still, keep the
  // message generic and the original as `cause`.
  return new StoreUnavailable(undefined, { details: { rule }, ...(cause === undefined ? {} : { cause }) })
}

/** Admission control of one connection: how many commands may be outstanding, and how many calls may wait for a slot. */
export interface AdmissionOptions {
  /**
   * Commands sent and not yet answered on the connection, at most. A call beyond it waits
   * in the queue; nothing is sent for it until a slot frees. Default 128.
   */
  readonly maxInFlight?: number
  /**
   * Calls waiting for a slot (or for the connection to become ready), at most. A call beyond
   * it is refused at once with `ERR_STORE_BUSY`. A waiting call that reaches its deadline is
   * refused too, before anything was sent. Default 1024.
   */
  readonly maxQueued?: number
  /**
   * After this many consecutive sent commands without a reply in time, the connection is
   * treated as dead: it is dropped (its outstanding commands settle as outcome unknown) and
   * re-established. Default 5.
   */
  readonly deadAfterTimeouts?: number
}

export const DEFAULT_MAX_IN_FLIGHT = 128
export const DEFAULT_MAX_QUEUED = 1024
export const DEFAULT_DEAD_AFTER_TIMEOUTS = 5

function assertCount(v: unknown, name: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw optionProblem(STORE, [name], `expected an integer from 1 to ${max}`)
  return v
}

/** Redis answered the command with an error: it ran (or failed) there, the outcome is known. */
function isReplyError(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'ReplyError'
}

interface Waiter {
  /** Starts the call if it is still waiting; false when it already settled. */
  readonly start: () => boolean
  readonly closed: () => void
}

/**
 * A client plus the rules every call goes through:
 * - admission: at most `maxInFlight` commands outstanding; up to `maxQueued` calls wait for
 *   a slot or for readiness, each until its deadline; a call refused while waiting gets
 *   `ERR_STORE_BUSY` (queue full or deadline passed with the store up) or
 *   `ERR_STORE_UNAVAILABLE` rule `not-ready` (the connection is down). Nothing was sent for
 *   either, so a retry of the same call is safe.
 * - a sent command's deadline starts when it is handed to the socket, and a timer that fires
 *   first lets the event loop read replies that already arrived before it denies (a busy
 *   loop must not turn answered commands into denials). A sent command that still has no
 *   reply is denied with `ERR_STORE_UNAVAILABLE` rule `outcome-unknown`: it may have run.
 * - `deadAfterTimeouts` consecutive outcome-unknown commands drop and re-establish the connection.
 */
export class FailClosedConnection {
  readonly client: Redis | Cluster
  readonly owned: boolean
  readonly timeoutMs: number
  readonly maxInFlight: number
  readonly maxQueued: number
  readonly deadAfterTimeouts: number
  #closed = false
  #inFlight = 0
  #consecutiveTimeouts = 0
  /**
   * Calls waiting, in arrival order. A call leaves it when it starts, times out or is
   * closed, so a long outage under load holds at most `maxQueued` waiters, never one per
   * call made during it.
   */
  #queue = new Set<Waiter>()
  #queued = 0
  readonly #onReady = (): void => {
    this.#drain()
  }
  readonly #onError = (): void => {
    // Connection errors surface as denials of the calls they affect; the event itself must
    // never reach Node's default handler (which would print, or crash an EventEmitter user).
  }

  constructor(options: RedisConnectionOptions & AdmissionOptions, timeoutMs: number) {
    this.timeoutMs = timeoutMs
    this.maxInFlight = assertCount(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT, 'maxInFlight', 100_000)
    this.maxQueued = assertCount(options.maxQueued ?? DEFAULT_MAX_QUEUED, 'maxQueued', 1_000_000)
    this.deadAfterTimeouts = assertCount(options.deadAfterTimeouts ?? DEFAULT_DEAD_AFTER_TIMEOUTS, 'deadAfterTimeouts', 1000)
    const given = [options.redis, options.url, options.nodes, options.sentinels].filter((v) => v !== undefined).length
    if (given > 1) throw optionProblem(STORE, [], 'expected only one of redis, url, nodes or sentinels')
    const base: RedisOptions = { ...options.redisOptions, ...failClosedRedisOptions(timeoutMs) }
    if (options.redis !== undefined) {
      if (!(options.redis instanceof Redis) && !(options.redis instanceof Cluster))
        throw optionProblem(STORE, ['redis'], 'expected an ioredis Redis or Cluster client')
      const prefix = options.redis instanceof Cluster ? options.redis.options.keyPrefix : options.redis.options.keyPrefix
      // Our scripts derive some key names from arguments; a client-side keyPrefix would not apply to those.
      if (prefix !== undefined && prefix !== '')
        throw optionProblem(STORE, ['redis'], "expected a client without keyPrefix (use the store's prefix option)")
      this.client = options.redis
      this.owned = false
    } else if (options.nodes !== undefined) {
      if (!Array.isArray(options.nodes) || options.nodes.length === 0)
        throw optionProblem(STORE, ['nodes'], 'expected at least one cluster node')
      const clusterOptions: ClusterOptions = {
        redisOptions: base,
        enableOfflineQueue: false,
        clusterRetryStrategy: reconnectDelay,
        // Bound how long the client retries on its own, so that the deadline, not a retry loop, decides.
        retryDelayOnClusterDown: 50,
        retryDelayOnFailover: 50,
        retryDelayOnTryAgain: 50,
        slotsRefreshTimeout: Math.max(500, timeoutMs * 2),
        maxRedirections: 4,
      }
      this.client = new Cluster([...options.nodes], clusterOptions)
      this.owned = true
    } else if (options.sentinels !== undefined) {
      if (typeof options.name !== 'string' || options.name.length === 0)
        throw optionProblem(STORE, ['name'], 'is required with sentinels (the master name Sentinel monitors)')
      this.client = new Redis({ ...base, sentinels: [...options.sentinels], name: options.name, sentinelRetryStrategy: reconnectDelay })
      this.owned = true
    } else {
      const url = options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
      if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) throw optionProblem(STORE, ['url'], 'expected a redis:// or rediss:// URL')
      this.client = new Redis(url, base)
      this.owned = true
    }
    this.client.on('error', this.#onError)
    this.client.on('ready', this.#onReady)
  }

  /** Commands sent and not yet settled, and calls waiting: for metrics and tests. */
  get load(): { inFlight: number; queued: number } {
    return { inFlight: this.#inFlight, queued: this.#queued }
  }

  /**
   * Run `fn` with the client: resolves with its result, or rejects with `StoreBusy` or
   * `StoreUnavailable` in every failure case (see the class comment), within about
   * `timeoutMs` of admission and of sending. The underlying promise is always observed, so a
   * late failure can never become an unhandled rejection.
   */
  run<T>(fn: (client: Redis | Cluster) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(unavailable('closed'))
    return new Promise<T>((resolve, reject) => {
      let state: 'queued' | 'sent' | 'done' = 'queued'
      let sendTimer: ReturnType<typeof setTimeout> | undefined
      // eslint-disable-next-line prefer-const -- set only when the call has to wait; read by leaveQueue before that
      let queueTimer: ReturnType<typeof setTimeout> | undefined
      // eslint-disable-next-line prefer-const -- set only when the call has to wait; read by leaveQueue before that
      let waiter: Waiter | undefined
      const leaveQueue = (): void => {
        clearTimeout(queueTimer)
        if (waiter !== undefined) this.#queue.delete(waiter)
        this.#queued--
      }
      const done = (): void => {
        state = 'done'
        clearTimeout(sendTimer)
        this.#inFlight--
        this.#drain()
      }
      const start = (): boolean => {
        if (state !== 'queued') return false
        leaveQueue()
        state = 'sent'
        this.#inFlight++
        let p: Promise<T>
        try {
          p = fn(this.client)
        } catch (e) {
          done()
          reject(unavailable('error', e))
          return true
        }
        sendTimer = setTimeout(() => {
          // Let the poll phase read replies that arrived while the loop was busy, then decide.
          setImmediate(() => {
            if (state !== 'sent') return
            done()
            this.#timedOut()
            reject(unavailable('outcome-unknown'))
          })
        }, this.timeoutMs)
        p.then(
          (v) => {
            if (state !== 'sent') return
            this.#consecutiveTimeouts = 0
            done()
            resolve(v)
          },
          (e: unknown) => {
            if (state !== 'sent') return
            done()
            // A Redis error reply is an answer; a dropped connection leaves the outcome open.
            reject(isReplyError(e) ? unavailable('error', e) : unavailable('outcome-unknown', e))
          },
        )
        return true
      }
      const closed = (): void => {
        if (state !== 'queued') return
        state = 'done'
        leaveQueue()
        reject(unavailable('closed'))
      }
      this.#queued++
      const status = this.client.status
      if (status === 'end' && !this.owned) return closed()
      if (status === 'wait') this.client.connect().catch(() => undefined) // a lazyConnect client we were given
      if (status === 'ready' && this.#inFlight < this.maxInFlight && this.#queue.size === 0) {
        start()
        return
      }
      if (this.#queued > this.maxQueued) {
        state = 'done'
        leaveQueue()
        return reject(busy('queue-full'))
      }
      queueTimer = setTimeout(() => {
        if (state !== 'queued') return
        state = 'done'
        leaveQueue()
        reject(this.client.status === 'ready' ? busy('queue-deadline') : unavailable('not-ready'))
      }, this.timeoutMs)
      waiter = { start, closed }
      this.#queue.add(waiter)
    })
  }

  /** Start waiting calls while there are free slots and the connection is ready. */
  #drain(): void {
    if (this.#closed || this.client.status !== 'ready') return
    // Each started waiter removes itself from the set (leaveQueue), so this takes the oldest each time.
    for (const w of this.#queue) {
      if (this.#inFlight >= this.maxInFlight) return
      if (!w.start()) this.#queue.delete(w)
    }
  }

  #timedOut(): void {
    if (++this.#consecutiveTimeouts < this.deadAfterTimeouts) return
    this.#consecutiveTimeouts = 0
    // Treat the connection as dead: drop it (outstanding commands reject as outcome unknown)
    // and reconnect. A client we were given is left to its owner.
    if (this.owned) this.client.disconnect(true)
  }

  /** `true` once the client answered since it last (re)connected. */
  get ready(): boolean {
    return !this.#closed && this.client.status === 'ready'
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.owned) {
      // disconnect() rather than quit(): quit would need the (possibly dead) server to answer.
      this.client.disconnect()
    }
    this.client.off('ready', this.#onReady)
    const waiting = [...this.#queue]
    this.#queue.clear()
    for (const w of waiting) w.closed()
    // Keep swallowing late error events from a client we created; a borrowed client gets its listener back.
    if (!this.owned) this.client.off('error', this.#onError)
  }
}
