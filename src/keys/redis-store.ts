/**
 * Signing keys in Redis, for several authority replicas, and the public
 * JWKS published next to them for verifiers.
 *
 * Subpath: `agent-trust/keys/redis` (needs the optional peer `ioredis` 5).
 *
 * Keys (one hash tag, so the atomic save works on Cluster too; default prefix `agent-trust-keys`):
 *   `{<prefix>}:private`  the records, WITH private keys: authority replicas only
 *   `{<prefix>}:jwks`     the public JWKS (no `d` member ever): verifiers may read this one;
 *                         with the manager's `prepublish_ms` (RFC 7517 section 5 lets a JWK Set
 *                         carry other members), which `redisJwks` keeps its cache age below
 *   `{<prefix>}:lock`     a short lock so that one replica rotates at a time
 *
 * Keep private keys away from verifiers with Redis ACL users (Redis 6+): the verifier's
 * user gets read access to `{<prefix>}:jwks` only, the authority's user all three. The
 * default prefix differs from the revocation store's (`agent-trust`), so a verifier's
 * pattern `{agent-trust:*` never matches these keys. Full ACL lines: docs/stores.md.
 *
 * @module agent-trust/keys/redis
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { randomUUID } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { z } from 'zod'
import { StoreUnavailable } from '../errors.js'
import { parseOptions, withMethods } from '../lib/options.js'
import { assertTimeout, FailClosedConnection, type RedisConnectionOptions } from '../lib/redis.js'
import { cachedJwksSource, type RefreshableJwksSource } from './remote-jwks.js'
import { publicJwkOf, type JSONWebKeySet, type JWK, type SigningKeyRecord } from './index.js'
import { parseRecords, serializeRecords, type KeySaveMeta, type KeyStore } from './store.js'

export type { RedisConnectionOptions } from '../lib/redis.js'

const PREFIX = /^[A-Za-z0-9._:/@+-]{1,64}$/
const DEFAULT_PREFIX = 'agent-trust-keys'

// KEYS: private, jwks, lock. ARGV: records document, JWKS keys (a JSON array), lock token
// ('' when not locked), prepublish ms ('' when the caller does not know it: the published
// value is kept). Both documents change together, and only while the caller still holds
// the lock (fencing).
const SAVE_LUA = `
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return redis.error_reply('LOCKLOST the key-store lock expired before the save')
end
local prepublish = ARGV[4]
if prepublish == '' then
  local old = redis.call('GET', KEYS[2])
  if old then
    local ok, doc = pcall(cjson.decode, old)
    if ok and type(doc) == 'table' and type(doc.prepublish_ms) == 'number' then prepublish = string.format('%d', doc.prepublish_ms) end
  end
end
local jwks = '{"keys":' .. ARGV[2]
if prepublish ~= '' then jwks = jwks .. ',"prepublish_ms":' .. prepublish end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], jwks .. '}')
return 1
`
// KEYS[1]: lock. ARGV[1]: token. Release only our own lock.
const UNLOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
const CMD_SAVE = 'agentTrustKeySaveV2'
const CMD_UNLOCK = 'agentTrustKeyUnlockV1'
type ScriptFn = (...args: Array<string | number>) => Promise<unknown>

export interface RedisKeyStoreOptions extends RedisConnectionOptions {
  /** Key prefix (1-64 chars of `[A-Za-z0-9._:/@+-]`). Default `agent-trust-keys`. */
  readonly prefix?: string
  /** Bound on each Redis call, ms. Default 1000 (key operations are rare, not on the call path). */
  readonly commandTimeoutMs?: number
  /** How long the rotation lock lives if its holder dies, ms. Default 10000. */
  readonly lockTtlMs?: number
  /** How long `withLock({wait: true})` waits for the lock, ms. Default 5000. */
  readonly lockWaitMs?: number
}

/** The Redis key names for a prefix. */
export function keyStoreKeys(prefix: string = DEFAULT_PREFIX): { readonly private: string; readonly jwks: string; readonly lock: string } {
  if (typeof prefix !== 'string' || !PREFIX.test(prefix))
    throw new TypeError('"prefix" must be 1-64 chars of [A-Za-z0-9._:/@+-] (no braces)')
  const tag = `{${prefix}}`
  return { private: `${tag}:private`, jwks: `${tag}:jwks`, lock: `${tag}:lock` }
}

/** The public JWKS for a list of records: every key they hold, public members only. */
export function jwksOfRecords(records: readonly SigningKeyRecord[]): JSONWebKeySet {
  return { keys: records.map((r) => publicJwkOf(r.privateJwk, r.kid)) }
}

const timeout = z.int().min(1).max(60_000).optional()

/** {@link RedisKeyStoreOptions}, checked once. A URL or password is never echoed. */
const RedisKeyStoreOptionsSchema = z.strictObject({
  url: z.string().min(1).optional(),
  redis: withMethods<Redis | Cluster>('defineCommand').optional(),
  nodes: z.array(z.unknown()).readonly().optional(),
  sentinels: z
    .array(z.strictObject({ host: z.string(), port: z.int() }))
    .readonly()
    .optional(),
  name: z.string().optional(),
  redisOptions: z.record(z.string(), z.unknown()).optional(),
  prefix: z.string().regex(PREFIX, 'expected 1-64 chars of [A-Za-z0-9._:/@+-] (no braces)').optional(),
  commandTimeoutMs: timeout,
  lockTtlMs: timeout,
  lockWaitMs: timeout,
})

/**
 * A {@link KeyStore} in Redis shared by authority replicas; also publishes the public JWKS
 * at `{<prefix>}:jwks` on every save. Every failure is `ERR_STORE_UNAVAILABLE`.
 *
 * @example
 * ```ts
 * import { RedisKeyStore } from 'agent-trust/keys/redis'
 * const manager = await createKeyManager({ store: new RedisKeyStore({ url: process.env.REDIS_URL }) })
 * const authority = await Authority.create({ manifest, keys: manager.keys, store })
 * manager.start()
 * ```
 */
export class RedisKeyStore implements KeyStore {
  readonly keys: ReturnType<typeof keyStoreKeys>
  readonly #conn: FailClosedConnection
  readonly #lockTtlMs: number
  readonly #lockWaitMs: number
  // The lock token of the withLock() call we are inside, if any (per async context, so
  // several managers sharing this object in one process do not mix their locks).
  readonly #held = new AsyncLocalStorage<string>()

  constructor(input: RedisKeyStoreOptions = {}) {
    const options = parseOptions('RedisKeyStore', RedisKeyStoreOptionsSchema, input)
    this.keys = keyStoreKeys(options.prefix ?? DEFAULT_PREFIX)
    this.#lockTtlMs = assertTimeout(options.lockTtlMs ?? 10_000, 'lockTtlMs')
    this.#lockWaitMs = assertTimeout(options.lockWaitMs ?? 5_000, 'lockWaitMs')
    this.#conn = new FailClosedConnection(input, assertTimeout(options.commandTimeoutMs ?? 1000, 'commandTimeoutMs'))
    this.#conn.client.defineCommand(CMD_SAVE, { lua: SAVE_LUA, numberOfKeys: 3 })
    this.#conn.client.defineCommand(CMD_UNLOCK, { lua: UNLOCK_LUA, numberOfKeys: 1 })
  }

  async load(): Promise<SigningKeyRecord[]> {
    const text = await this.#conn.run((c) => c.get(this.keys.private))
    return text === null ? [] : parseRecords(text)
  }

  async save(records: readonly SigningKeyRecord[], meta: KeySaveMeta = {}): Promise<void> {
    const token = this.#held.getStore() ?? ''
    const keys = JSON.stringify(jwksOfRecords(records).keys)
    const p = meta.prepublishMs
    const prepublish = typeof p === 'number' && Number.isSafeInteger(p) && p >= 0 ? String(p) : ''
    try {
      await this.#conn.run((c) =>
        (c as unknown as Record<string, ScriptFn>)[CMD_SAVE]!(
          this.keys.private,
          this.keys.jwks,
          this.keys.lock,
          serializeRecords(records),
          keys,
          token,
          prepublish,
        ),
      )
    } catch (e) {
      const lost = String((e as { cause?: { message?: unknown } }).cause?.message ?? '').startsWith('LOCKLOST')
      if (lost)
        throw new StoreUnavailable('the key-store lock expired before the save; nothing was written', {
          details: { rule: 'lock-lost' },
          cause: e,
        })
      throw e
    }
  }

  async withLock<T>(fn: () => Promise<T>, options: { wait: boolean }): Promise<T | undefined> {
    if (this.#held.getStore() !== undefined) return fn() // re-entrant within one holder
    const token = randomUUID()
    const deadline = Date.now() + (options.wait ? this.#lockWaitMs : 0)
    for (;;) {
      const got = await this.#conn.run((c) => c.set(this.keys.lock, token, 'PX', this.#lockTtlMs, 'NX'))
      if (got === 'OK') break
      if (Date.now() >= deadline) {
        if (!options.wait) return undefined
        throw new StoreUnavailable('the key-store lock is held by another replica; try again', { details: { rule: 'lock-busy' } })
      }
      await new Promise((r) => setTimeout(r, 25 + Math.floor(Math.random() * 25)))
    }
    try {
      return await this.#held.run(token, fn)
    } finally {
      await this.#conn.run((c) => (c as unknown as Record<string, ScriptFn>)[CMD_UNLOCK]!(this.keys.lock, token)).catch(() => undefined)
    }
  }

  /** The published public JWKS, as verifiers see it (`undefined` before the first save). */
  async publishedJwks(): Promise<JSONWebKeySet | undefined> {
    const text = await this.#conn.run((c) => c.get(this.keys.jwks))
    return text === null ? undefined : parsePublicJwks(text)
  }

  async close(): Promise<void> {
    await this.#conn.close()
  }
}

function parsePublicJwks(text: string): JSONWebKeySet {
  const doc = JSON.parse(text) as { keys?: unknown; prepublish_ms?: unknown }
  if (typeof doc !== 'object' || doc === null || !Array.isArray(doc.keys)) throw new TypeError('not a JWKS')
  // Defence in depth: a private member never leaves this function, whoever wrote the key.
  const keys = (doc.keys as JWK[]).filter((k) => typeof k === 'object' && k !== null && k.d === undefined)
  const p = doc.prepublish_ms
  return typeof p === 'number' && Number.isSafeInteger(p) && p >= 0 ? { keys, prepublish_ms: p } : { keys }
}

export interface RedisJwksOptions extends RedisConnectionOptions {
  /** The key store's prefix. Default `agent-trust-keys`. */
  readonly prefix?: string
  /**
   * Re-read the JWKS in the background once the copy is this old, ms. Default 5000. Kept at
   * most half of the `prepublish_ms` the key manager publishes, so a key is known before it
   * signs whatever the two were configured with.
   */
  readonly cacheMaxAgeMs?: number
  /** At most one re-read on an unknown kid per this many ms. Default 1000. */
  readonly cooldownMs?: number
  /** Without a successful read for this long, trust no key. Default 600000 (10 minutes). */
  readonly maxStaleMs?: number
  /** Bound on each read, ms. Default 1000. */
  readonly commandTimeoutMs?: number
}

const RedisJwksOptionsSchema = RedisKeyStoreOptionsSchema.omit({ lockTtlMs: true, lockWaitMs: true }).extend({
  cacheMaxAgeMs: z.int().min(0).optional(),
  cooldownMs: z.int().min(0).optional(),
  maxStaleMs: z.int().min(0).optional(),
})

/**
 * A verifier's JWKS read from Redis (`{<prefix>}:jwks`), needing no access to private
 * keys. Same caching and fail-closed rules as `remoteJwks`.
 *
 * @example
 * ```ts
 * import { redisJwks } from 'agent-trust/keys/redis'
 * const jwks = redisJwks({ url: process.env.REDIS_URL_VERIFIER })
 * const verifier = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer: 'agent-trust-authority', jwks }], store })
 * // on shutdown: await jwks.close()
 * ```
 */
export function redisJwks(input: RedisJwksOptions = {}): RefreshableJwksSource & { close(): Promise<void> } {
  const options = parseOptions('redisJwks', RedisJwksOptionsSchema, input)
  const keys = keyStoreKeys(options.prefix ?? DEFAULT_PREFIX)
  const conn = new FailClosedConnection(input, assertTimeout(options.commandTimeoutMs ?? 1000, 'commandTimeoutMs'))
  const source = cachedJwksSource(
    async () => {
      const text = await conn.run((c) => c.get(keys.jwks))
      return text === null ? undefined : parsePublicJwks(text)
    },
    { cacheMaxAgeMs: options.cacheMaxAgeMs ?? 5000, cooldownMs: options.cooldownMs ?? 1000, maxStaleMs: options.maxStaleMs ?? 600_000 },
  )
  Object.defineProperty(source, 'close', { value: () => conn.close(), enumerable: true })
  return source as RefreshableJwksSource & { close(): Promise<void> }
}
