/**
 * Scheduled key rotation: every `rotationIntervalMs` (24 h by default) a
 * new key takes over; the one it replaces stays published for the overlap (max token
 * lifetime + clock tolerance) so that no token it signed is falsely rejected; a
 * compromised key is dropped at once with `revoke(kid)`.
 *
 * Zero false rejections also needs verifiers to know a key BEFORE its first token. So the
 * next key is created and published `prepublishMs` before it starts signing (default
 * 5 minutes, at most half the interval): a verifier that caches the JWKS has it by then if
 * its cache age is below `prepublishMs`. The manager hands `prepublishMs` to the store with
 * every save; `RedisKeyStore` publishes it in the JWKS document (`prepublish_ms`) and
 * `redisJwks`/`remoteJwks` readers keep their cache age at most half of it, whatever they
 * were configured with, so no combination of settings rejects a valid token by design.
 *
 * Several authority replicas sharing one `RedisKeyStore` converge: each change is made
 * under the store's lock, after re-reading the store, and persisted before it is used; the
 * other replicas adopt the persisted records on their next tick.
 */
import { z } from 'zod'
import { fn, parseOptions, withMethods } from '../lib/options.js'
import { KeySet, type SigningKeyRecord } from './index.js'
import { FileKeyStore, defaultKeyFile, type KeyStore } from './store.js'

export interface KeyManagerOptions {
  /** Where keys persist. Default: `FileKeyStore` at `AGENT_TRUST_KEY_FILE` or `.agent-trust/keys.json`. */
  readonly store?: KeyStore
  /** How long each key signs, ms. Default 86400000 (24 h). */
  readonly rotationIntervalMs?: number
  /** How long a retired key stays published, ms. Default: 330000 (300 s max lifetime + 30 s max tolerance); at least 300000. */
  readonly overlapMs?: number
  /** How long before it signs a new key is published, ms. Default: min(300000, rotationIntervalMs / 2). */
  readonly prepublishMs?: number
  /** How often the timer checks the schedule and re-reads the store, ms. Default: a quarter of the shorter of the interval and prepublish, within 10 ms .. 30 s. */
  readonly checkIntervalMs?: number
  /** Clock, epoch ms (tests). Default `Date.now`. */
  readonly now?: () => number
  /** Background failures (store unreachable...). They never throw; the current keys keep working. */
  readonly onError?: (error: unknown) => void
}

export interface KeyManager {
  /** The live key set: give it to `Authority.create({ keys })`; its JWKS to the verifiers. */
  readonly keys: KeySet
  /**
   * Rotate now: a new key is published at once and signs after `prepublishMs`, or at once
   * with `{ immediate: true }` (verifiers that cache the JWKS may then reject its first
   * tokens until they refresh). Resolves with the new kid once persisted.
   */
  rotateNow(options?: { immediate?: boolean }): Promise<string>
  /** Compromise: drop the key everywhere at once (persisted, then adopted by every replica). */
  revoke(kid: string): Promise<boolean>
  /** One tick: adopt what other replicas persisted, rotate if due, drop expired keys. */
  sync(): Promise<void>
  /** Start the timer (unref'd: it never keeps the process alive). Idempotent. */
  start(): void
  /** Stop the timer. Idempotent. */
  stop(): void
}

const DAY_MS = 24 * 3600 * 1000

/** {@link KeyManagerOptions}, checked once when the manager is built. */
const KeyManagerOptionsSchema = z
  .strictObject({
    store: withMethods<KeyStore>('load', 'save').optional(),
    rotationIntervalMs: z.int().min(1).optional(),
    overlapMs: z.number().optional(),
    prepublishMs: z.int().min(0).optional(),
    checkIntervalMs: z.int().min(1).optional(),
    now: fn<() => number>().optional(),
    onError: fn<(error: unknown) => void>().optional(),
  })
  .refine((o) => o.prepublishMs === undefined || o.prepublishMs < (o.rotationIntervalMs ?? DAY_MS), {
    path: ['prepublishMs'],
    message: 'expected less than rotationIntervalMs',
  })

/** Lifecycle fingerprint of a record list: what replicas must agree on. */
function fingerprint(records: readonly SigningKeyRecord[]): string {
  return records.map((r) => `${r.kid}/${r.createdAtMs}/${r.activatesAtMs ?? ''}/${r.retiredAtMs ?? ''}`).join(' ')
}

/**
 * The records without `kid`, with `KeySet.revoke`'s semantics: if it was a pending key, the
 * keys it was to replace keep signing. Pure, so a revoked key is never loaded, even briefly.
 */
function withoutKey(records: readonly SigningKeyRecord[], kid: string, now: number): SigningKeyRecord[] {
  const gone = records.find((r) => r.kid === kid)
  if (gone === undefined) return [...records]
  const rest = records.filter((r) => r !== gone)
  const pendingAt = gone.activatesAtMs
  if (pendingAt === undefined || pendingAt <= now) return rest
  return rest.map((r) => {
    if (r.retiredAtMs !== pendingAt) return r
    const { retiredAtMs: _, ...kept } = r
    return kept
  })
}

class RotatingKeyManager implements KeyManager {
  readonly keys: KeySet
  readonly #store: KeyStore
  readonly #now: () => number
  readonly #interval: number
  readonly #prepublish: number
  readonly #check: number
  readonly #onError: (e: unknown) => void
  /** Kids this replica revoked: never adopted again, even from a stale store. */
  readonly #revoked = new Set<string>()
  #timer: NodeJS.Timeout | undefined
  #queue: Promise<unknown> = Promise.resolve()

  constructor(
    keys: KeySet,
    store: KeyStore,
    o: { now: () => number; interval: number; prepublish: number; check: number; onError: (e: unknown) => void },
  ) {
    this.keys = keys
    this.#store = store
    this.#now = o.now
    this.#interval = o.interval
    this.#prepublish = o.prepublish
    this.#check = o.check
    this.#onError = o.onError
  }

  /** One operation at a time within this replica; across replicas the store's lock decides. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => undefined)
    return run
  }

  #locked<T>(fn: () => Promise<T>, wait: boolean): Promise<T | undefined> {
    return this.#store.withLock === undefined ? fn() : this.#store.withLock(fn, { wait })
  }

  /** Load the store and adopt its records (minus kids we revoked). Returns what was loaded. */
  async #adopt(): Promise<SigningKeyRecord[]> {
    const loaded = await this.#store.load()
    let usable = loaded
    for (const kid of this.#revoked) usable = withoutKey(usable, kid, this.#now())
    if (usable.length > 0 && fingerprint(usable) !== fingerprint(this.keys.records())) await this.keys.replace(usable)
    return loaded
  }

  /** Persist our records if they differ from what the store holds. */
  async #persist(loaded: readonly SigningKeyRecord[]): Promise<void> {
    const mine = this.keys.records()
    if (fingerprint(mine) === fingerprint(loaded)) return
    await this.#store.save(mine, { prepublishMs: this.#prepublish })
  }

  #rotationDue(t: number): boolean {
    const records = this.keys.records()
    const newest = records[records.length - 1]
    if (newest === undefined) return true
    const start = newest.activatesAtMs ?? newest.createdAtMs
    if (start > t) return false // the next key is already published and waiting
    return t >= start + this.#interval - this.#prepublish
  }

  #pruneDue(t: number): boolean {
    return this.keys.records().some((r) => r.retiredAtMs !== undefined && r.retiredAtMs + this.keys.overlapMs <= t)
  }

  /** A change made in memory, persisted, and undone in memory if persisting fails. */
  async #change<T>(loaded: readonly SigningKeyRecord[], apply: () => Promise<T>): Promise<T> {
    const before = this.keys.records()
    const result = await apply()
    try {
      await this.#persist(loaded)
    } catch (e) {
      // Never sign with a key the other replicas (and verifiers reading the store) do not know.
      await this.keys.replace(before)
      throw e
    }
    return result
  }

  sync(): Promise<void> {
    return this.#serial(async () => {
      const loaded = await this.#adopt()
      const t = this.#now()
      const revokedStill = loaded.some((r) => this.#revoked.has(r.kid))
      if (loaded.length > 0 && !revokedStill && !this.#rotationDue(t) && !this.#pruneDue(t)) return
      await this.#locked(async () => {
        const fresh = await this.#adopt()
        const t2 = this.#now()
        await this.#change(fresh, async () => {
          if (this.#rotationDue(t2)) await this.keys.rotate(undefined, t2, { activateAtMs: t2 + this.#prepublish })
          this.keys.prune(t2)
        })
      }, false)
    })
  }

  rotateNow(options: { immediate?: boolean } = {}): Promise<string> {
    return this.#serial(async () => {
      const kid = await this.#locked(async () => {
        const loaded = await this.#adopt()
        const t = this.#now()
        return this.#change(loaded, () =>
          this.keys.rotate(undefined, t, { activateAtMs: options.immediate === true ? t : t + this.#prepublish }),
        )
      }, true)
      return kid as string
    })
  }

  revoke(kid: string): Promise<boolean> {
    if (typeof kid !== 'string' || kid.length === 0) return Promise.reject(new TypeError('kid must be a non-empty string'))
    // Dropped from memory at once (not behind a queued tick), and remembered: this replica
    // never signs with it nor re-adopts it, even if persisting fails (the next tick retries).
    const known = this.keys.records().some((r) => r.kid === kid)
    this.#revoked.add(kid)
    const dropping = this.keys.revoke(kid, this.#now())
    dropping.catch(() => undefined) // observed below; never an unhandled rejection meanwhile
    return this.#serial(async () => {
      await dropping
      const inStore = await this.#locked(async () => {
        const loaded = await this.#adopt()
        await this.#persist(loaded)
        return loaded.some((r) => r.kid === kid)
      }, true)
      return known || inStore === true
    })
  }

  start(): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => {
      this.sync().catch((e: unknown) => this.#onError(e))
    }, this.#check)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer === undefined) return
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}

/**
 * Load (or create and persist) the authority's keys and manage their rotation.
 *
 * @example
 * ```ts
 * import { Authority, createKeyManager, FileKeyStore } from 'agent-trust'
 * const manager = await createKeyManager({ store: new FileKeyStore('/var/lib/agent-trust/keys.json') })
 * const authority = await Authority.create({ manifest, keys: manager.keys })
 * manager.start() // rotates every 24 h; manager.stop() on shutdown
 * ```
 */
export async function createKeyManager(input: KeyManagerOptions = {}): Promise<KeyManager> {
  const options = parseOptions('createKeyManager', KeyManagerOptionsSchema, input)
  const store: KeyStore = options.store ?? new FileKeyStore(defaultKeyFile())
  const now = options.now ?? Date.now
  const interval = options.rotationIntervalMs ?? DAY_MS
  const prepublish = options.prepublishMs ?? Math.min(300_000, Math.floor(interval / 2))
  const check = options.checkIntervalMs ?? Math.min(30_000, Math.max(10, Math.floor(Math.min(interval, prepublish || interval) / 4)))
  const onError = options.onError ?? (() => undefined)

  const load = async (): Promise<KeySet> => {
    const records = await store.load()
    const keys = await KeySet.create(records, { ...(options.overlapMs === undefined ? {} : { overlapMs: options.overlapMs }), now })
    // A first key (or an activated pending one) must be persisted before it signs anything.
    if (fingerprint(keys.records()) !== fingerprint(records)) await store.save(keys.records(), { prepublishMs: prepublish })
    return keys
  }
  const keys = store.withLock === undefined ? await load() : await store.withLock(load, { wait: true })
  if (keys === undefined) throw new TypeError('the key store returned no lock result') // withLock with wait never resolves undefined
  return new RotatingKeyManager(keys, store, { now, interval, prepublish, check, onError })
}
