/**
 * Internal: one ioredis connection (standalone, Sentinel or Cluster) with fail-closed
 * defaults, and a deadline wrapper that turns every failure into `ERR_STORE_UNAVAILABLE`.
 * Shared by the revocation store and the Redis key store. Never exported from the package.
 */
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis'
import { StoreUnavailable } from '../errors.js'

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
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(1000, commandTimeoutMs * 5),
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  }
}

export function assertTimeout(ms: unknown, name: string): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > 60_000)
    throw new TypeError(`${name} must be an integer number of milliseconds from 1 to 60000`)
  return ms
}

function unavailable(rule: string, cause?: unknown): StoreUnavailable {
  // ioredis error messages name hosts and commands, never values we sent; still, keep the
  // message generic and the original as `cause`.
  return new StoreUnavailable(undefined, { details: { rule }, ...(cause === undefined ? {} : { cause }) })
}

/**
 * A client plus the rules every call goes through: wait for readiness at most until the
 * deadline, never queue while disconnected, settle within `timeoutMs` whatever happens.
 */
export class FailClosedConnection {
  readonly client: Redis | Cluster
  readonly owned: boolean
  readonly timeoutMs: number
  #closed = false
  readonly #waiting = new Set<() => void>()
  readonly #onReady = (): void => {
    const waiting = [...this.#waiting]
    this.#waiting.clear()
    for (const start of waiting) start()
  }
  readonly #onError = (): void => {
    // Connection errors surface as denials of the calls they affect; the event itself must
    // never reach Node's default handler (which would print, or crash an EventEmitter user).
  }

  constructor(options: RedisConnectionOptions, timeoutMs: number) {
    this.timeoutMs = timeoutMs
    const given = [options.redis, options.url, options.nodes, options.sentinels].filter((v) => v !== undefined).length
    if (given > 1) throw new TypeError('pass only one of "redis", "url", "nodes" or "sentinels"')
    const base: RedisOptions = { ...options.redisOptions, ...failClosedRedisOptions(timeoutMs) }
    if (options.redis !== undefined) {
      if (!(options.redis instanceof Redis) && !(options.redis instanceof Cluster))
        throw new TypeError('"redis" must be an ioredis Redis or Cluster client')
      const prefix = options.redis instanceof Cluster ? options.redis.options.keyPrefix : options.redis.options.keyPrefix
      // Our scripts derive some key names from arguments; a client-side keyPrefix would not apply to those.
      if (prefix !== undefined && prefix !== '')
        throw new TypeError('the ioredis "keyPrefix" option is not supported; use the store\'s "prefix" option')
      this.client = options.redis
      this.owned = false
    } else if (options.nodes !== undefined) {
      if (!Array.isArray(options.nodes) || options.nodes.length === 0) throw new TypeError('"nodes" must list at least one cluster node')
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
        throw new TypeError('"name" (the master name Sentinel monitors) is required with "sentinels"')
      this.client = new Redis({ ...base, sentinels: [...options.sentinels], name: options.name, sentinelRetryStrategy: reconnectDelay })
      this.owned = true
    } else {
      const url = options.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
      if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) throw new TypeError('"url" must be a redis:// or rediss:// URL')
      this.client = new Redis(url, base)
      this.owned = true
    }
    this.client.on('error', this.#onError)
    this.client.on('ready', this.#onReady)
  }

  /**
   * Run `fn` with the client: resolves with its result, or rejects with `StoreUnavailable`
   * within `timeoutMs` in every failure case (not ready, refused, reset, timed out, closed,
   * a Redis error reply). The underlying promise is always observed, so a late failure can
   * never become an unhandled rejection.
   */
  run<T>(fn: (client: Redis | Cluster) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(unavailable('closed'))
    return new Promise<T>((resolve, reject) => {
      let settled = false
      const finish = (): void => {
        settled = true
        clearTimeout(timer)
        this.#waiting.delete(start)
      }
      const timer = setTimeout(() => {
        if (settled) return
        finish()
        reject(unavailable('timeout'))
      }, this.timeoutMs)
      const ok = (v: T): void => {
        if (settled) return
        finish()
        resolve(v)
      }
      const fail = (e: unknown): void => {
        if (settled) return
        finish()
        reject(e instanceof StoreUnavailable ? e : unavailable('error', e))
      }
      const start = (): void => {
        if (settled) return
        if (this.#closed) return fail(unavailable('closed'))
        let p: Promise<T>
        try {
          p = fn(this.client)
        } catch (e) {
          return fail(e)
        }
        p.then(ok, fail)
      }
      const status = this.client.status
      if (status === 'ready') return start()
      if (status === 'end' && !this.owned) return fail(unavailable('closed'))
      if (status === 'wait') this.client.connect().catch(() => undefined) // a lazyConnect client we were given
      // Connecting or reconnecting: start when ready, but never past the deadline. A waiter
      // leaves the set when its call settles, so an outage holds at most one bound's worth
      // of calls in memory.
      this.#waiting.add(start)
    })
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
    for (const start of [...this.#waiting]) start() // each sees #closed and settles as 'closed'
    // Keep swallowing late error events from a client we created; a borrowed client gets its listener back.
    if (!this.owned) this.client.off('error', this.#onError)
  }
}
