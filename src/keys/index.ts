/**
 * ES256 signing keys: generation and import through jose, a key set that
 * rotates with overlap, and the public JWKS that verifiers trust.
 */
import { KeyObject, type webcrypto } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose'
import { z } from 'zod'
import { KeyInvalid } from '../errors.js'
import { fn, parseOptions } from '../lib/options.js'

export type { JWK } from 'jose'
import { DEFAULT_CLOCK_TOLERANCE_SECONDS, MAX_TOKEN_LIFETIME_SECONDS } from '../policy/limits.js'

export interface JSONWebKeySet {
  readonly keys: readonly JWK[]
  /**
   * Optional: how long before it signs each new key is published (the key manager's
   * `prepublishMs`). A JWK Set may carry other members (RFC 7517, section 5); the JWKS
   * readers keep their cache age at most half of this one.
   */
  readonly prepublish_ms?: number
}

export type JwksSource = JSONWebKeySet | (() => JSONWebKeySet | Promise<JSONWebKeySet>)

/** One signing key as persisted: private JWK plus its life cycle, times in epoch ms. */
export interface SigningKeyRecord {
  readonly kid: string
  readonly privateJwk: JWK
  readonly createdAtMs: number
  /** When it stopped signing; it stays in the JWKS until `retiredAtMs + overlap`. */
  readonly retiredAtMs?: number
  /**
   * When it starts signing, epoch ms (default: at once). It is published in the JWKS from
   * creation, so that verifiers that cache the JWKS learn it before its first token.
   */
  readonly activatesAtMs?: number
}

const PUBLIC_MEMBERS = ['kty', 'crv', 'x', 'y'] as const

/** The public half of an EC JWK with `kid`, `alg`, `use`: what goes into a JWKS. */
export function publicJwkOf(jwk: JWK, kid: string): JWK {
  const out: JWK = { kid, alg: 'ES256', use: 'sig' }
  for (const m of PUBLIC_MEMBERS) if (jwk[m] !== undefined) (out as Record<string, unknown>)[m] = jwk[m]
  return out
}

function assertP256(jwk: JWK, needPrivate: boolean): void {
  if (
    typeof jwk !== 'object' ||
    jwk === null ||
    jwk.kty !== 'EC' ||
    jwk.crv !== 'P-256' ||
    typeof jwk.x !== 'string' ||
    typeof jwk.y !== 'string'
  ) {
    throw new KeyInvalid('the key must be an EC P-256 JWK (kty "EC", crv "P-256")')
  }
  if (jwk.alg !== undefined && jwk.alg !== 'ES256') throw new KeyInvalid("the key's alg must be ES256")
  if (needPrivate && typeof jwk.d !== 'string') throw new KeyInvalid('a signing key needs its private member "d"')
  if (!needPrivate && jwk.d !== undefined)
    throw new KeyInvalid('a verification key must not contain the private member "d"; publish public keys only')
}

/** jose imports (and validates) the JWK; the hot path wants a node:crypto `KeyObject`. */
async function importP256(jwk: JWK, kind: 'public' | 'private'): Promise<KeyObject> {
  assertP256(jwk, kind === 'private')
  let key: Awaited<ReturnType<typeof importJWK>>
  try {
    key = await importJWK({ ...jwk, alg: 'ES256' }, 'ES256')
  } catch (cause) {
    throw new KeyInvalid(`the ${kind} key could not be imported`, { cause })
  }
  if (key instanceof Uint8Array) throw new KeyInvalid('expected an asymmetric key')
  return KeyObject.from(key as unknown as webcrypto.CryptoKey)
}

/** Import a public P-256 JWK as a `KeyObject` for the verify hot path. */
export function importPublicKey(jwk: JWK): Promise<KeyObject> {
  return importP256(jwk, 'public')
}

/** Import a private P-256 JWK as a `KeyObject` for signing. */
export function importPrivateKey(jwk: JWK): Promise<KeyObject> {
  return importP256(jwk, 'private')
}

/** Generate a new ES256 key; `kid` is its RFC 7638 thumbprint. */
export async function generateSigningKey(nowMs = Date.now()): Promise<SigningKeyRecord> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const privateJwk = await exportJWK(privateKey)
  const kid = await calculateJwkThumbprint(privateJwk, 'sha256')
  return { kid, privateJwk: { ...privateJwk, kid, alg: 'ES256' }, createdAtMs: nowMs }
}

export interface KeySetOptions {
  /** How long a retired key stays published. Default: 300 s max lifetime + 30 s max tolerance. */
  readonly overlapMs?: number
  /** Clock, epoch ms (tests). Default `Date.now`. */
  readonly now?: () => number
}

interface LoadedKey {
  readonly record: SigningKeyRecord
  readonly privateKey: KeyObject
  readonly publicJwk: JWK
}

/** {@link KeySetOptions}, checked once. A key must stay published while tokens it signed live. */
const KeySetOptionsSchema = z.strictObject({
  overlapMs: z
    .number()
    .min(MAX_TOKEN_LIFETIME_SECONDS * 1000, 'expected at least the maximum token lifetime (300000 ms)')
    .optional(),
  now: fn<() => number>().optional(),
})

/**
 * The authority's keys: one active key signs; retired keys stay in the JWKS for the
 * overlap so that no token they signed is falsely rejected; a revoked key is gone at once.
 */
export class KeySet {
  #keys: LoadedKey[] = []
  #jwks: JSONWebKeySet = Object.freeze({ keys: Object.freeze([]) as readonly JWK[] })
  readonly overlapMs: number
  #listeners = new Set<() => void>()
  readonly #now: () => number
  /** Kids revoked in this set: never loaded again (not by `replace`, not by `rotate`). */
  readonly #revokedKids = new Set<string>()

  private constructor(overlapMs: number, now: () => number) {
    this.overlapMs = overlapMs
    this.#now = now
  }

  /** Load persisted records (the newest non-retired one signs), or generate a first key. */
  static async create(records: readonly SigningKeyRecord[] = [], options: KeySetOptions = {}): Promise<KeySet> {
    const o = parseOptions('KeySet.create', KeySetOptionsSchema, options)
    const { overlapMs = (MAX_TOKEN_LIFETIME_SECONDS + 6 * DEFAULT_CLOCK_TOLERANCE_SECONDS) * 1000 } = o
    const set = new KeySet(overlapMs, o.now ?? Date.now)
    for (const r of records) await set.#add(r)
    await set.#ensureUsable(set.#now())
    set.#republish()
    return set
  }

  /** A key that may sign at `now`: activated, and not retired as of `now`. */
  static #usable(r: SigningKeyRecord, now: number): boolean {
    return (r.activatesAtMs === undefined || r.activatesAtMs <= now) && (r.retiredAtMs === undefined || r.retiredAtMs > now)
  }

  /** After a load or a revocation: a pending key activates at once, else a new key is generated. */
  async #ensureUsable(now: number): Promise<boolean> {
    if (this.#keys.some((k) => KeySet.#usable(k.record, now))) return false
    for (let i = this.#keys.length - 1; i >= 0; i--) {
      const k = this.#keys[i] as LoadedKey
      if (k.record.retiredAtMs === undefined) {
        this.#keys[i] = { ...k, record: { ...k.record, activatesAtMs: now } }
        return true
      }
    }
    await this.#add(await generateSigningKey(now))
    return true
  }

  async #add(record: SigningKeyRecord): Promise<void> {
    if (typeof record.kid !== 'string' || record.kid.length === 0) throw new KeyInvalid('a signing key needs a kid')
    if (this.#keys.some((k) => k.record.kid === record.kid)) throw new KeyInvalid(`duplicate kid "${record.kid}"`)
    if (this.#revokedKids.has(record.kid)) throw new KeyInvalid(`key "${record.kid}" was revoked`)
    const privateKey = await importPrivateKey(record.privateJwk)
    this.#keys.push({ record, privateKey, publicJwk: publicJwkOf(record.privateJwk, record.kid) })
  }

  /** The key that signs now: the newest one that is activated and not retired. */
  active(): { readonly kid: string; readonly privateKey: KeyObject } {
    const now = this.#now()
    for (let i = this.#keys.length - 1; i >= 0; i--) {
      const k = this.#keys[i] as LoadedKey
      if (KeySet.#usable(k.record, now)) return { kid: k.record.kid, privateKey: k.privateKey }
    }
    throw new KeyInvalid('no active signing key')
  }

  /**
   * Start signing with a new key (generated, or the one given); the old one is retired.
   * With `activateAtMs` in the future the new key is published now and signs from then on
   * (the current key signs until that moment): verifiers caching the JWKS see it first.
   */
  async rotate(next?: SigningKeyRecord, nowMs = this.#now(), options: { activateAtMs?: number } = {}): Promise<string> {
    const activateAt = options.activateAtMs ?? nowMs
    if (!Number.isFinite(activateAt)) throw new TypeError('activateAtMs must be a finite epoch time in milliseconds')
    const base = next ?? (await generateSigningKey(nowMs))
    const record: SigningKeyRecord = activateAt > nowMs ? { ...base, activatesAtMs: activateAt } : base
    await this.#add(record)
    this.#keys = this.#keys.map((k) =>
      k.record.kid !== record.kid && (k.record.retiredAtMs === undefined || k.record.retiredAtMs > activateAt)
        ? { ...k, record: { ...k.record, retiredAtMs: activateAt } }
        : k,
    )
    this.prune(nowMs)
    this.#republish()
    return record.kid
  }

  /**
   * Adopt records persisted by another replica (same semantics as {@link create}), keeping
   * this object, and its already imported keys, in place. The JWKS object changes only if
   * the set of published keys changed.
   */
  async replace(records: readonly SigningKeyRecord[]): Promise<void> {
    const old = new Map(this.#keys.map((k) => [k.record.kid, k]))
    const next: LoadedKey[] = []
    const seen = new Set<string>()
    for (const record of records) {
      if (typeof record?.kid !== 'string' || record.kid.length === 0) throw new KeyInvalid('a signing key needs a kid')
      if (this.#revokedKids.has(record.kid)) continue
      if (seen.has(record.kid)) throw new KeyInvalid(`duplicate kid "${record.kid}"`)
      seen.add(record.kid)
      const k = old.get(record.kid)
      if (k !== undefined && k.record.privateJwk.d === record.privateJwk?.d) {
        next.push({ ...k, record })
      } else {
        const privateKey = await importPrivateKey(record.privateJwk)
        next.push({ record, privateKey, publicJwk: publicJwkOf(record.privateJwk, record.kid) })
      }
    }
    const before = this.#keys.map((k) => k.record.kid).join(' ')
    this.#keys = next
    await this.#ensureUsable(this.#now())
    if (this.#keys.map((k) => k.record.kid).join(' ') !== before) this.#republish()
  }

  /** Compromise: drop a key at once, active or retired. A new key is generated if it was the active one. */
  async revoke(kid: string, nowMs = this.#now()): Promise<boolean> {
    const gone = this.#keys.find((k) => k.record.kid === kid)
    if (gone === undefined) return false
    this.#revokedKids.add(kid)
    this.#keys = this.#keys.filter((k) => k !== gone)
    const pendingAt = gone.record.activatesAtMs
    if (pendingAt !== undefined && pendingAt > nowMs) {
      // A key that had not started signing: the keys it was to replace keep signing.
      this.#keys = this.#keys.map((k) => {
        if (k.record.retiredAtMs !== pendingAt) return k
        const { retiredAtMs: _, ...record } = k.record
        return { ...k, record }
      })
    }
    // Unpublished at once (synchronously), before any await: the next verification in this process already rejects it.
    this.#republish()
    if (await this.#ensureUsable(nowMs)) this.#republish()
    return true
  }

  /** Drop retired keys whose every token has expired. Returns the kids dropped. */
  prune(nowMs = this.#now()): string[] {
    const dropped: string[] = []
    this.#keys = this.#keys.filter((k) => {
      const gone = k.record.retiredAtMs !== undefined && k.record.retiredAtMs + this.overlapMs <= nowMs
      if (gone) dropped.push(k.record.kid)
      return !gone
    })
    if (dropped.length > 0) this.#republish()
    return dropped
  }

  /** The public JWKS. The same frozen object until the set changes, so callers can compare by identity. */
  jwks(): JSONWebKeySet {
    return this.#jwks
  }

  /** Records for persistence (contain private keys: store with mode 0600). */
  records(): readonly SigningKeyRecord[] {
    return this.#keys.map((k) => k.record)
  }

  /** Called after every change of the published set. Returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #republish(): void {
    this.#jwks = Object.freeze({ keys: Object.freeze(this.#keys.map((k) => Object.freeze({ ...k.publicJwk }))) })
    for (const l of this.#listeners) l()
  }
}
