/**
 * Certificate revocation, checked by peer validation on every request.
 *
 * Node's TLS stack does not consult CRLs or OCSP unless it is handed a CRL, and agent
 * certificates are short-lived anyway; so revocation is a set checked in process, after the
 * handshake, before any message is processed. Two kinds of entry:
 * - a serial number (one certificate, e.g. a leaked key), kept until that certificate expires;
 * - an identity (a SPIFFE ID) revoked at time T: every certificate for it whose `notBefore`
 *   is at or before T. The authority adds one when it revokes an agent.
 *
 * In another process, {@link RevocationFeedStore} (`agent-trust/authority-service`) keeps
 * one of these in sync with the authority.
 */
import { CERTIFICATE_BACKDATE_SECONDS, MAX_CERTIFICATE_TTL_SECONDS } from './ca.js'
import type { CertificateRevocationChecker, CertificateStatusInput } from './types.js'

export type { CertificateRevocationChecker, CertificateStatusInput } from './types.js'

export interface CertificateRevocationEntries {
  readonly serials: ReadonlyArray<{ readonly serialNumber: string; readonly forgetAtMs: number }>
  readonly identities: ReadonlyArray<{ readonly spiffeId: string; readonly atMs: number; readonly forgetAtMs: number }>
}

/** After this long every certificate issued before a revocation has expired. */
/** Equal to `IDENTITY_REVOCATION_KEEP_MS` of the revocation store (a test checks it). */
export const IDENTITY_KEEP_MS = (MAX_CERTIFICATE_TTL_SECONDS + 2 * CERTIFICATE_BACKDATE_SECONDS) * 1000

const SERIAL = /^[0-9a-f]{1,40}$/

/** In-memory revocation set. Monotonic: a revocation is never undone, only forgotten once moot. */
export class CertificateRevocationList implements CertificateRevocationChecker {
  readonly #serials = new Map<string, number>()
  readonly #identities = new Map<string, { atMs: number; forgetAtMs: number }>()
  #nextSweepMs = 0

  /** Revoke one certificate (serial in hex) until `forgetAtMs` (its `notAfter` is enough). */
  revokeSerial(serialNumber: string, forgetAtMs: number): void {
    const s = String(serialNumber).toLowerCase()
    if (!SERIAL.test(s)) throw new TypeError('serialNumber must be hex')
    this.#serials.set(s, Math.max(this.#serials.get(s) ?? 0, forgetAtMs))
  }

  /** Revoke every certificate of `spiffeId` whose notBefore is at or before `atMs`. */
  revokeIdentity(spiffeId: string, atMs: number, forgetAtMs: number = atMs + IDENTITY_KEEP_MS): void {
    if (typeof spiffeId !== 'string' || !spiffeId.startsWith('spiffe://')) throw new TypeError('spiffeId must be a SPIFFE ID')
    const prev = this.#identities.get(spiffeId)
    this.#identities.set(spiffeId, { atMs: Math.max(prev?.atMs ?? 0, atMs), forgetAtMs: Math.max(prev?.forgetAtMs ?? 0, forgetAtMs) })
  }

  isRevoked(c: CertificateStatusInput, nowMs: number = Date.now()): boolean {
    if (nowMs >= this.#nextSweepMs) this.#sweep(nowMs)
    const s = this.#serials.get(c.serialNumber)
    if (s !== undefined && s > nowMs) return true
    const i = this.#identities.get(c.spiffeId)
    return i !== undefined && i.forgetAtMs > nowMs && c.notBeforeMs <= i.atMs
  }

  /** A copy of the live entries (for the revocation feed). */
  entries(nowMs: number = Date.now()): CertificateRevocationEntries {
    this.#sweep(nowMs)
    return {
      serials: [...this.#serials].map(([serialNumber, forgetAtMs]) => ({ serialNumber, forgetAtMs })),
      identities: [...this.#identities].map(([spiffeId, v]) => ({ spiffeId, ...v })),
    }
  }

  get size(): number {
    return this.#serials.size + this.#identities.size
  }

  #sweep(now: number): void {
    for (const [k, v] of this.#serials) if (v <= now) this.#serials.delete(k)
    for (const [k, v] of this.#identities) if (v.forgetAtMs <= now) this.#identities.delete(k)
    this.#nextSweepMs = now + 1000
  }
}
