/**
 * A verifier's JWKS from a URL: jose's remote key set (fetch, timeout,
 * cache age, cooldown) wrapped as a {@link JwksSource} for the key ring.
 *
 * The key ring compares JWKS objects by identity on every call, so this source hands back
 * the SAME frozen object until a refresh brings different keys: keys are imported once,
 * not per call. Past half of `cacheMaxAgeMs` a call triggers a background refresh (so with
 * steady traffic no call waits); past `cacheMaxAgeMs` a call waits for the refresh. A token
 * whose `kid` is unknown triggers one refresh, unless the source is cooling down (one
 * fetch per `cooldownMs` at most, so a flood of random kids cannot become a flood of fetches).
 *
 * A JWKS document with a `prepublish_ms` member (the Redis key store writes the key
 * manager's `prepublishMs` there) lowers the cache age to half of it at most, so a reader
 * always holds a key before its first token, whatever its own setting.
 *
 * A key the authority revoked is trusted for at most `cacheMaxAgeMs` (plus one fetch) while
 * the URL answers. If it does not, the last copy is kept until `maxStaleMs` (default 10
 * minutes) and then dropped: the source publishes no keys, so every token is denied
 * `ERR_TOKEN_KEY_UNKNOWN` until the URL answers again (fail closed).
 */
import { createRemoteJWKSet } from 'jose'
import { z } from 'zod'
import { ConfigInvalid } from '../errors.js'
import { parseOptions } from '../lib/options.js'
import type { JSONWebKeySet } from './index.js'
import type { JwksSource } from './index.js'

export interface RemoteJwksOptions {
  /** Refresh in the background once the copy is this old, ms. Default 60000 (1 minute). */
  readonly cacheMaxAgeMs?: number
  /** At most one refresh on an unknown kid per this many ms. Default 10000. */
  readonly cooldownMs?: number
  /** Fetch timeout, ms. Default 5000. */
  readonly timeoutMs?: number
  /** Without a successful refresh for this long, stop trusting the copy. Default 600000 (10 minutes). */
  readonly maxStaleMs?: number
  /** Extra request headers (e.g. authorization for an internal endpoint). */
  readonly headers?: Record<string, string>
}

/** A JWKS source that can be asked to refresh (the key ring does so once on an unknown kid). */
export interface RefreshableJwksSource {
  (): JSONWebKeySet | Promise<JSONWebKeySet>
  /** Refresh now unless a refresh happened within the cooldown. Never rejects. */
  reload(): Promise<void>
  /** True while a refresh would be skipped. */
  readonly coolingDown: boolean
}

const EMPTY: JSONWebKeySet = Object.freeze({ keys: Object.freeze([]) })

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x)
    Object.freeze(v)
  }
  return v
}

const ms = z.int().min(0).optional()

/** `remoteJwks(url, options)`, checked once when the source is built. The URL is never echoed (it may carry a token). */
const RemoteJwksArgsSchema = z.strictObject({
  url: z.union([z.instanceof(URL), z.string()], { error: 'expected a URL or string' }).transform((v, ctx) => {
    try {
      const u = v instanceof URL ? v : new URL(v)
      if (u.protocol === 'https:' || u.protocol === 'http:') return u
    } catch {
      // reported below
    }
    ctx.addIssue({ code: 'custom', message: 'expected an http(s) URL' })
    return z.NEVER
  }),
  options: z
    .strictObject({
      cacheMaxAgeMs: ms,
      cooldownMs: ms,
      timeoutMs: ms,
      maxStaleMs: ms,
      headers: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
})

/**
 * The cache age a reader may use: a copy younger than half the publisher's `prepublish_ms`
 * was fetched after any key that signs now was published (the other half covers the save,
 * the fetch and timer slack). Without the member (or 0: keys sign at once, which no cache
 * can follow) the configured age stands.
 */
export function safeMaxAge(configuredMs: number, prepublishMs: unknown): number {
  if (typeof prepublishMs !== 'number' || !Number.isSafeInteger(prepublishMs) || prepublishMs <= 0) return configuredMs
  return Math.min(configuredMs, Math.floor(prepublishMs / 2))
}

/**
 * Internal building block shared by {@link remoteJwks} and the Redis JWKS source: keeps the
 * current snapshot (same object while unchanged), refreshes in the background when old,
 * waits for a refresh when too old, and publishes nothing when no refresh succeeds.
 */
export function cachedJwksSource(
  fetchJwks: () => Promise<JSONWebKeySet | undefined>,
  o: { cacheMaxAgeMs: number; cooldownMs: number; maxStaleMs: number },
): RefreshableJwksSource {
  let current: JSONWebKeySet | undefined
  let currentText = ''
  let fetchedAt = Number.NEGATIVE_INFINITY
  let attemptedAt = Number.NEGATIVE_INFINITY
  let pending: Promise<void> | undefined
  // The cache age in force: the configured one, or half the published prepublish lead if lower.
  let maxAge = o.cacheMaxAgeMs

  const refresh = (): Promise<void> => {
    if (pending !== undefined) return pending
    attemptedAt = Date.now()
    pending = fetchJwks()
      .then((jwks) => {
        if (jwks === undefined || !Array.isArray(jwks.keys)) throw new TypeError('no JWKS')
        const text = JSON.stringify(jwks)
        // Same keys as before: keep the same object, so the key ring does no work.
        if (text !== currentText || current === undefined) {
          current = deepFreeze(structuredClone(jwks))
          currentText = text
        }
        maxAge = safeMaxAge(o.cacheMaxAgeMs, jwks.prepublish_ms)
        fetchedAt = Date.now()
      })
      .finally(() => {
        pending = undefined
      })
    return pending
  }
  const quiet = (): void => {
    refresh().catch(() => undefined)
  }

  const failedRecently = (now: number): boolean => pending === undefined && attemptedAt > fetchedAt && now - attemptedAt < o.cooldownMs
  const source = (() => {
    const now = Date.now()
    const age = now - fetchedAt
    if (current === undefined || age > o.maxStaleMs) {
      // Nothing usable yet, or too old to trust: wait for one refresh; publish nothing if it
      // fails (and do not retry on every call while the URL is down: once per cooldown).
      if (failedRecently(now)) return EMPTY
      return refresh().then(
        () => current ?? EMPTY,
        () => EMPTY,
      )
    }
    if (age > maxAge) {
      // Expired: wait for the refresh, so that a revoked key is never trusted past the cache
      // age; if the URL is down, keep the last copy until maxStaleMs.
      if (failedRecently(now)) return current
      return refresh().then(
        () => current as JSONWebKeySet,
        () => current as JSONWebKeySet,
      )
    }
    // Refresh ahead, in the background: under steady traffic no call ever waits.
    if (age > maxAge / 2 && pending === undefined && now - attemptedAt > Math.min(o.cooldownMs, maxAge / 2)) quiet()
    return current
  }) as RefreshableJwksSource
  Object.defineProperty(source, 'coolingDown', {
    get: () => Date.now() - Math.max(fetchedAt, attemptedAt) < o.cooldownMs,
    enumerable: true,
  })
  Object.defineProperty(source, 'reload', {
    value: async (): Promise<void> => {
      if (source.coolingDown) return pending === undefined ? undefined : pending.catch(() => undefined)
      await refresh().catch(() => undefined)
    },
    enumerable: true,
  })
  return source
}

/**
 * Trust the JWKS published at `url` (e.g. the authority's `createJwksHandler` endpoint).
 *
 * @example
 * ```ts
 * import { createVerifier, remoteJwks } from 'agent-trust'
 * const verifier = createVerifier({
 *   id: 'agent-database-reader',
 *   issuers: [{ issuer: 'agent-trust-authority', jwks: remoteJwks('https://authority.internal/.well-known/jwks.json') }],
 * })
 * ```
 */
export function remoteJwks(url: string | URL, options: RemoteJwksOptions = {}): RefreshableJwksSource & JwksSource {
  const { url: u, options: o = {} } = parseOptions('remoteJwks', RemoteJwksArgsSchema, { url, options })
  const cacheMaxAgeMs = o.cacheMaxAgeMs ?? 60_000
  const cooldownMs = o.cooldownMs ?? 10_000
  const timeoutMs = o.timeoutMs ?? 5_000
  const maxStaleMs = o.maxStaleMs ?? 600_000
  if (maxStaleMs < cacheMaxAgeMs)
    throw new ConfigInvalid('remoteJwks: invalid options:\n  - options.maxStaleMs: expected at least cacheMaxAgeMs', {
      details: { rule: 'options', issues: 1, path: 'options.maxStaleMs' },
    })
  // jose does the fetching: timeout, no redirects, JWKS shape validation, de-duplication
  // of concurrent fetches. Its own cooldown/age are set to ours.
  const set = createRemoteJWKSet(u, {
    cacheMaxAge: cacheMaxAgeMs,
    cooldownDuration: cooldownMs,
    timeoutDuration: timeoutMs,
    headers: o.headers,
  })
  return cachedJwksSource(
    async () => {
      await set.reload()
      return set.jwks() as JSONWebKeySet | undefined
    },
    { cacheMaxAgeMs, cooldownMs, maxStaleMs },
  )
}
