/**
 * The verifier's trusted keys: kid -> (issuer, KeyObject), imported once through jose and
 * cached. Sources are static JWKS objects, or functions returning the current JWKS (an
 * in-process authority: compared by identity on every call, so a rotated or revoked key
 * takes effect on the next call at no cost). Remote JWKS URLs plug in as functions too.
 */
import type { KeyObject } from 'node:crypto'
import { ConfigInvalid, KeyInvalid, TokenKeyUnknown } from '../errors.js'
import { importPublicKey, type JSONWebKeySet, type JwksSource, type JWK } from '../keys/index.js'

/** A function source may also carry `reload()`: called once when a token names an unknown kid (see `remoteJwks`). */
type Reloadable = { reload?: () => Promise<unknown> }

export interface TrustedIssuer {
  /** The `iss` value this issuer signs with. */
  readonly issuer: string
  /** Its public keys: a JWKS, or a function returning the current one (see `remoteJwks`). */
  readonly jwks: JwksSource
}

export interface ResolvedKey {
  readonly issuer: string
  readonly key: KeyObject
}

interface SourceState {
  readonly issuer: string
  readonly source: JwksSource
  last: JSONWebKeySet | undefined
}

function jwkIdentity(jwk: JWK): string {
  return `${jwk.kid}|${jwk.crv}|${jwk.x}|${jwk.y}`
}

export class KeyRing {
  #byKid = new Map<string, ResolvedKey>()
  readonly #imported = new Map<string, KeyObject>()
  readonly #sources: SourceState[]
  readonly #dynamic: boolean
  readonly #reloadable: ReadonlyArray<() => Promise<unknown>>
  #pending: Promise<void> | undefined
  #reloading: Promise<void> | undefined

  constructor(issuers: readonly TrustedIssuer[]) {
    if (!Array.isArray(issuers) || issuers.length === 0)
      throw new ConfigInvalid('at least one trusted issuer is required', { details: { rule: 'issuers' } })
    const seen = new Set<string>()
    for (const i of issuers) {
      if (typeof i?.issuer !== 'string' || i.issuer.length === 0)
        throw new ConfigInvalid('each trusted issuer needs a non-empty "issuer"', { details: { rule: 'issuers' } })
      if (seen.has(i.issuer)) throw new ConfigInvalid(`issuer "${i.issuer}" is listed twice`, { details: { rule: 'issuers' } })
      seen.add(i.issuer)
      if (typeof i.jwks !== 'function' && !Array.isArray((i.jwks as JSONWebKeySet | undefined)?.keys)) {
        throw new ConfigInvalid(`issuer "${i.issuer}": jwks must be a JWKS object or a function returning one`, {
          details: { rule: 'issuers' },
        })
      }
    }
    this.#sources = issuers.map((i) => ({ issuer: i.issuer, source: i.jwks, last: undefined }))
    this.#dynamic = this.#sources.some((s) => typeof s.source === 'function')
    this.#reloadable = issuers.flatMap((i) => {
      const reload = typeof i.jwks === 'function' ? (i.jwks as Reloadable).reload : undefined
      return typeof reload === 'function' ? [reload.bind(i.jwks)] : []
    })
  }

  /**
   * Resolve a kid. Dynamic sources are polled on each call; when one returns the same object
   * as before nothing else happens, so the in-process case costs a function call.
   */
  async resolve(kid: string): Promise<ResolvedKey> {
    if (this.#dynamic || this.#pending !== undefined || this.#sources.some((s) => s.last === undefined)) await this.#sync()
    let k = this.#byKid.get(kid)
    if (k === undefined && this.#reloadable.length > 0) {
      // Unknown kid: maybe a key published after our last fetch. Ask reloadable sources
      // once; each respects its own cooldown, so random kids cannot force a fetch per call.
      await this.#reload()
      k = this.#byKid.get(kid)
    }
    if (k === undefined) throw new TokenKeyUnknown(undefined, { details: { kid: kid.slice(0, 64) } })
    return k
  }

  async #reload(): Promise<void> {
    if (this.#reloading === undefined) {
      this.#reloading = Promise.allSettled(this.#reloadable.map((r) => r()))
        .then(() => this.#sync())
        .finally(() => {
          this.#reloading = undefined
        })
    }
    return this.#reloading
  }

  async #sync(): Promise<void> {
    // A single refresh at a time; concurrent callers share it.
    if (this.#pending !== undefined) return this.#pending
    const values = this.#sources.map((s) => (typeof s.source === 'function' ? s.source() : s.source))
    if (values.some((v) => v instanceof Promise)) {
      this.#pending = Promise.allSettled(values).then((settled) => {
        const jwks = settled.map((r) => (r.status === 'fulfilled' ? r.value : undefined))
        return this.#rebuildIfChanged(jwks)
      })
      try {
        await this.#pending
      } finally {
        this.#pending = undefined
      }
      return
    }
    const jwks = values as JSONWebKeySet[]
    if (jwks.every((v, i) => v === this.#sources[i]!.last)) return
    this.#pending = this.#rebuildIfChanged(jwks).finally(() => {
      this.#pending = undefined
    })
    return this.#pending
  }

  async #rebuildIfChanged(jwks: Array<JSONWebKeySet | undefined>): Promise<void> {
    if (jwks.every((v, i) => v === undefined || v === this.#sources[i]!.last)) return
    return this.#rebuild(jwks)
  }

  async #rebuild(fetched: Array<JSONWebKeySet | undefined>): Promise<void> {
    const next = new Map<string, ResolvedKey>()
    const owners = new Map<string, string>()
    const contested = new Set<string>()
    // Two issuers claiming one kid: trust neither, rather than guess, whatever the order.
    const claim = (kid: string, issuer: string): boolean => {
      const owner = owners.get(kid)
      if (contested.has(kid) || (owner !== undefined && owner !== issuer)) {
        contested.add(kid)
        next.delete(kid)
        return false
      }
      owners.set(kid, issuer)
      return true
    }
    for (let i = 0; i < this.#sources.length; i++) {
      const s = this.#sources[i] as SourceState
      const jwks = fetched[i]
      if (jwks === undefined || !Array.isArray(jwks.keys)) {
        // An unreachable source keeps the keys it had (remote JWKS caching rules apply there).
        for (const [kid, k] of this.#byKid) if (k.issuer === s.issuer && claim(kid, s.issuer)) next.set(kid, k)
        continue
      }
      for (const jwk of jwks.keys) {
        if (typeof jwk.kid !== 'string' || jwk.kid.length === 0) continue
        if (jwk.alg !== undefined && jwk.alg !== 'ES256') continue
        if (jwk.use !== undefined && jwk.use !== 'sig') continue
        if (!claim(jwk.kid, s.issuer)) continue
        const id = jwkIdentity(jwk)
        let key = this.#imported.get(id)
        if (key === undefined) {
          try {
            key = await importPublicKey(jwk)
          } catch (e) {
            if (e instanceof KeyInvalid) continue
            throw e
          }
          this.#imported.set(id, key)
        }
        next.set(jwk.kid, { issuer: s.issuer, key })
      }
      s.last = jwks
    }
    this.#byKid = next
    // Drop imports no source publishes any more (rotated out or revoked).
    const live = new Set<KeyObject>([...next.values()].map((k) => k.key))
    for (const [id, key] of this.#imported) if (!live.has(key)) this.#imported.delete(id)
  }
}
