/**
 * The verifier's trusted keys: kid -> (issuer, KeyObject), imported once through jose and
 * cached. Sources are static JWKS objects, or functions returning the current JWKS (an
 * in-process authority: compared by identity on every call, so a rotated or revoked key
 * takes effect on the next call at no cost). Remote JWKS URLs plug in as functions too.
 */
import type { KeyObject } from 'node:crypto'
import { ConfigInvalid, KeyInvalid, TokenKeyUnknown } from '../errors.js'
import { printable } from '../policy/printable.js'
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
  readonly #reported = new Set<string>()

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
   * as before nothing else happens, so the in-process case costs a function call. Answers
   * without a promise when nothing has to be awaited (the keys are current and the kid is
   * known), so the verifier's common case takes no extra turn of the microtask queue.
   */
  resolve(kid: string): ResolvedKey | Promise<ResolvedKey> {
    const syncing =
      this.#dynamic || this.#pending !== undefined || this.#sources.some((s) => s.last === undefined) ? this.#sync() : undefined
    if (syncing !== undefined) return syncing.then(() => this.#lookup(kid))
    return this.#lookup(kid)
  }

  #lookup(kid: string): ResolvedKey | Promise<ResolvedKey> {
    const k = this.#byKid.get(kid)
    if (k !== undefined) return k
    if (this.#reloadable.length > 0) {
      // Unknown kid: maybe a key published after our last fetch. Ask reloadable sources
      // once; each respects its own cooldown, so random kids cannot force a fetch per call.
      return this.#reload().then(() => this.#known(kid))
    }
    return this.#known(kid)
  }

  #known(kid: string): ResolvedKey {
    const k = this.#byKid.get(kid)
    if (k === undefined) throw new TokenKeyUnknown(undefined, { details: { kid: kid.slice(0, 64) } })
    return k
  }

  /** A JWKS problem, as a process warning once per issuer, problem and kid (escaped: a remote set is data). */
  #report(issuer: string, problem: string, kid?: string): void {
    const line = `agent-trust: trusted issuer "${printable(issuer, 255)}" ${problem}${kid === undefined ? '' : ` (kid "${printable(kid, 64)}")`}`
    if (this.#reported.has(line) || this.#reported.size > 256) return
    this.#reported.add(line)
    process.emitWarning(line, { code: 'AGENT_TRUST_JWKS' })
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

  /** Refresh from the sources; `undefined` when nothing changed and nothing is pending (no promise). */
  #sync(): Promise<void> | undefined {
    // A single refresh at a time; concurrent callers share it.
    if (this.#pending !== undefined) return this.#pending
    const values = this.#sources.map((s) => (typeof s.source === 'function' ? s.source() : s.source))
    if (values.some((v) => v instanceof Promise)) {
      this.#pending = Promise.allSettled(values)
        .then((settled) => {
          const jwks = settled.map((r) => (r.status === 'fulfilled' ? r.value : undefined))
          return this.#rebuildIfChanged(jwks)
        })
        .finally(() => {
          this.#pending = undefined
        })
      return this.#pending
    }
    const jwks = values as JSONWebKeySet[]
    if (jwks.every((v, i) => v === this.#sources[i]!.last)) return undefined
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
    const owners = new Map<string, { issuer: string; id: string }>()
    const contested = new Set<string>()
    // A kid names one key. Published by two issuers, the first-listed issuer keeps it and the
    // other's entry is ignored (a co-trusted issuer cannot void the primary's key, and a token
    // is accepted only under the issuer of its key). One issuer publishing two different keys
    // under one kid is ambiguous: neither is trusted.
    const claim = (kid: string, issuer: string, id: string): boolean => {
      if (contested.has(kid)) return false
      const owner = owners.get(kid)
      if (owner === undefined) {
        owners.set(kid, { issuer, id })
        return true
      }
      if (owner.issuer !== issuer) {
        this.#report(issuer, `publishes a kid that issuer "${owner.issuer}", listed earlier, publishes too: its entry is ignored`, kid)
        return false
      }
      if (owner.id === id) return false
      this.#report(issuer, 'publishes two different keys under one kid: neither is trusted', kid)
      contested.add(kid)
      next.delete(kid)
      return false
    }
    for (let i = 0; i < this.#sources.length; i++) {
      const s = this.#sources[i] as SourceState
      const jwks = fetched[i]
      if (jwks === undefined || !Array.isArray(jwks.keys)) {
        // An unreachable source keeps the keys it had (remote JWKS caching rules apply there).
        for (const [kid, k] of this.#byKid) if (k.issuer === s.issuer && claim(kid, s.issuer, `kept|${kid}`)) next.set(kid, k)
        continue
      }
      for (const jwk of jwks.keys as unknown[]) {
        // RFC 7517 section 5: a JWK Set's "keys" member is an array of JWK objects; anything
        // else in it is skipped, so one bad entry never fails the other keys or issuers.
        if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
          this.#report(s.issuer, 'publishes a JWKS entry that is not a JSON object: it is skipped')
          continue
        }
        const entry = jwk as JWK
        if (typeof entry.kid !== 'string' || entry.kid.length === 0) continue
        if (entry.alg !== undefined && entry.alg !== 'ES256') continue
        if (entry.use !== undefined && entry.use !== 'sig') continue
        const id = jwkIdentity(entry)
        if (!claim(entry.kid, s.issuer, id)) continue
        let key = this.#imported.get(id)
        if (key === undefined) {
          try {
            key = await importPublicKey(entry)
          } catch (e) {
            if (e instanceof KeyInvalid) continue
            throw e
          }
          this.#imported.set(id, key)
        }
        next.set(entry.kid, { issuer: s.issuer, key })
      }
      s.last = jwks
    }
    this.#byKid = next
    // Drop imports no source publishes any more (rotated out or revoked).
    const live = new Set<KeyObject>([...next.values()].map((k) => k.key))
    for (const [id, key] of this.#imported) if (!live.has(key)) this.#imported.delete(id)
  }
}
