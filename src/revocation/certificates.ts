/**
 * Certificate revocations, kept in a store: one interface, two implementations, in memory
 * (one process) and Redis (`RedisReplayRevocationStore#certificateRevocations`, shared by
 * every replica and kept across restarts).
 *
 * Two kinds of entry:
 * - a serial number (one certificate, e.g. a leaked key), kept until `forgetAtMs`;
 * - an identity (a SPIFFE ID) revoked at `atMs`: every certificate for it whose `notBefore`
 *   is at or before `atMs`, kept until `forgetAtMs`.
 *
 * Monotonic: a write never undoes or shortens a revocation. A serial keeps the latest
 * `forgetAtMs` written; an identity keeps the latest `atMs` and the latest `forgetAtMs`
 * (so a later write with an earlier time changes nothing). Entries are forgotten once moot.
 *
 * `status` is a keyed lookup of one presented certificate (one round trip for Redis);
 * `page` lists entries in write order, a bounded page at a time, for the revocation feed.
 */
import { SequencedLog } from '../lib/sequenced-log.js'

/** What revocation needs to know about a presented certificate. */
export interface CertificateStatusInput {
  /** Lowercase hex. */
  readonly serialNumber: string
  readonly spiffeId: string
  readonly notBeforeMs: number
}

/** `good`, or which entry revokes the certificate. */
export type CertificateStatus = 'good' | 'serial-revoked' | 'identity-revoked'

export type CertificateRevocationEntry =
  | { readonly kind: 'certificate'; readonly serialNumber: string; readonly forgetAtMs: number }
  | { readonly kind: 'identity'; readonly spiffeId: string; readonly atMs: number; readonly forgetAtMs: number }

export interface CertificateRevocationPage {
  readonly entries: readonly CertificateRevocationEntry[]
  /** Pass back to read what was written after this page. Opaque. */
  readonly cursor: string
  /** True when more entries follow at once: ask again with `cursor`. */
  readonly more: boolean
}

/**
 * How long an identity revocation is kept: the longest certificate lifetime (7 days) plus
 * twice the backdating of `notBefore` (60 s), after which every certificate it refuses has
 * expired. The CA's limits (identity/ca.ts) are these; a test keeps them equal.
 */
export const IDENTITY_REVOCATION_KEEP_MS = (7 * 24 * 3600 + 2 * 60) * 1000

/** Largest page `page` returns, whatever `limit` asks. */
export const MAX_CERTIFICATE_PAGE = 10_000

export interface CertificateRevocationStore {
  /** Revoke one certificate (serial in hex) until `forgetAtMs` (its `notAfter` is enough). */
  revokeSerial(serialNumber: string, forgetAtMs: number): Promise<void>
  /** Revoke every certificate of `spiffeId` whose notBefore is at or before `atMs`, until `forgetAtMs`. */
  revokeIdentity(spiffeId: string, atMs: number, forgetAtMs: number): Promise<void>
  /** Keyed lookup of one certificate. Throws `ERR_STORE_UNAVAILABLE` when the store cannot answer. */
  status(certificate: CertificateStatusInput, nowMs?: number): Promise<CertificateStatus>
  /**
   * Entries written after `cursor` (from the start when it is absent or from another store
   * instance or Redis data set), oldest first, at most `limit` (default and cap
   * {@link MAX_CERTIFICATE_PAGE}).
   */
  page(options?: { cursor?: string; limit?: number }, nowMs?: number): Promise<CertificateRevocationPage>
  close(): Promise<void>
}

const SERIAL = /^[0-9a-f]{1,40}$/

/** Normalised serial, or a TypeError. */
export function normalSerial(serialNumber: string): string {
  const s = String(serialNumber).toLowerCase()
  if (!SERIAL.test(s)) throw new TypeError('serialNumber must be 1-40 hex digits')
  return s
}

export function assertSpiffeId(spiffeId: string): void {
  if (typeof spiffeId !== 'string' || !spiffeId.startsWith('spiffe://') || spiffeId.length > 2048)
    throw new TypeError('spiffeId must be a SPIFFE ID (spiffe://..., at most 2048 chars)')
}

export function assertEpochMs(v: number, name: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${name} must be a non-negative integer epoch time in milliseconds`)
}

export function pageLimit(limit: number | undefined): number {
  if (limit === undefined) return MAX_CERTIFICATE_PAGE
  if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer')
  return Math.min(limit, MAX_CERTIFICATE_PAGE)
}

/** The decision, given the two stored entries (pure: both implementations use it). */
export function decideStatus(
  c: CertificateStatusInput,
  serialForgetAtMs: number | undefined,
  identity: { atMs: number; forgetAtMs: number } | undefined,
  nowMs: number,
): CertificateStatus {
  if (serialForgetAtMs !== undefined && serialForgetAtMs > nowMs) return 'serial-revoked'
  if (identity !== undefined && identity.forgetAtMs > nowMs && c.notBeforeMs <= identity.atMs) return 'identity-revoked'
  return 'good'
}

type Value = { kind: 'certificate'; forgetAtMs: number } | { kind: 'identity'; atMs: number; forgetAtMs: number }

let instances = 0

/** Certificate revocations in this process's memory. */
export class MemoryCertificateRevocationStore implements CertificateRevocationStore {
  readonly #log = new SequencedLog<Value>()
  /** Cursors carry it, so a cursor from another instance restarts from the beginning. */
  readonly #epoch = `m${process.pid.toString(36)}x${(++instances).toString(36)}x${Date.now().toString(36)}`

  async revokeSerial(serialNumber: string, forgetAtMs: number): Promise<void> {
    this.revokeSerialSync(serialNumber, forgetAtMs)
  }

  revokeSerialSync(serialNumber: string, forgetAtMs: number, nowMs: number = Date.now()): void {
    const s = normalSerial(serialNumber)
    assertEpochMs(forgetAtMs, 'forgetAtMs')
    const prev = this.#log.get(`s:${s}`, nowMs)?.value
    const keep = Math.max(prev?.forgetAtMs ?? 0, forgetAtMs)
    if (prev !== undefined && keep === prev.forgetAtMs) return
    this.#log.set(`s:${s}`, { kind: 'certificate', forgetAtMs: keep }, keep)
  }

  async revokeIdentity(spiffeId: string, atMs: number, forgetAtMs: number): Promise<void> {
    this.revokeIdentitySync(spiffeId, atMs, forgetAtMs)
  }

  revokeIdentitySync(spiffeId: string, atMs: number, forgetAtMs: number, nowMs: number = Date.now()): void {
    assertSpiffeId(spiffeId)
    assertEpochMs(atMs, 'atMs')
    assertEpochMs(forgetAtMs, 'forgetAtMs')
    const prev = this.#log.get(`i:${spiffeId}`, nowMs)?.value
    const at = Math.max(prev?.kind === 'identity' ? prev.atMs : 0, atMs)
    const keep = Math.max(prev?.forgetAtMs ?? 0, forgetAtMs)
    if (prev?.kind === 'identity' && at === prev.atMs && keep === prev.forgetAtMs) return
    this.#log.set(`i:${spiffeId}`, { kind: 'identity', atMs: at, forgetAtMs: keep }, keep)
  }

  async status(c: CertificateStatusInput, nowMs: number = Date.now()): Promise<CertificateStatus> {
    return this.statusSync(c, nowMs)
  }

  statusSync(c: CertificateStatusInput, nowMs: number = Date.now()): CertificateStatus {
    this.#log.sweep(nowMs)
    const s = this.#log.get(`s:${String(c.serialNumber).toLowerCase()}`, nowMs)?.value
    const i = this.#log.get(`i:${c.spiffeId}`, nowMs)?.value
    return decideStatus(c, s?.forgetAtMs, i?.kind === 'identity' ? i : undefined, nowMs)
  }

  async page(options: { cursor?: string; limit?: number } = {}, nowMs: number = Date.now()): Promise<CertificateRevocationPage> {
    const limit = pageLimit(options.limit)
    const after = parseCursor(options.cursor, this.#epoch)
    const p = this.#log.page(after, limit, nowMs)
    const entries = p.entries.map((e): CertificateRevocationEntry => {
      const v = e.value
      return v.kind === 'certificate'
        ? { kind: 'certificate', serialNumber: e.key.slice(2), forgetAtMs: v.forgetAtMs }
        : { kind: 'identity', spiffeId: e.key.slice(2), atMs: v.atMs, forgetAtMs: v.forgetAtMs }
    })
    return { entries, cursor: `${this.#epoch}.${p.cursor}`, more: p.more }
  }

  get size(): number {
    return this.#log.size
  }

  async close(): Promise<void> {}
}

/** The sequence number in a cursor `<epoch>.<seq>`; 0 (from the start) for another epoch or none. */
export function parseCursor(cursor: string | undefined, epoch: string): number {
  if (cursor === undefined || cursor === '') return 0
  const dot = cursor.lastIndexOf('.')
  if (dot < 0 || cursor.slice(0, dot) !== epoch) return 0
  const n = Number(cursor.slice(dot + 1))
  return Number.isSafeInteger(n) && n >= 0 ? n : 0
}

export function isCertificateRevocationStore(s: unknown): s is CertificateRevocationStore {
  const o = s as Partial<CertificateRevocationStore> | undefined
  return (
    typeof o?.revokeSerial === 'function' &&
    typeof o.revokeIdentity === 'function' &&
    typeof o.status === 'function' &&
    typeof o.page === 'function'
  )
}
