/**
 * Revocation reaches every verifier.
 *
 * - {@link RevocationFeed} (authority side) is the authority's store: it forwards to the real
 *   store (memory or Redis) and keeps a log of every revocation (tokens, agents, certificates)
 *   that the service publishes at `GET /v1/revocations`.
 * - {@link RevocationFeedStore} (verifier side) is a `ReplayRevocationStore` fed by polling
 *   that feed. It fails closed: if it has not completed a poll for longer than
 *   `maxStalenessMs`, `check` throws `ERR_STORE_UNAVAILABLE` and certificate checks refuse.
 *
 * The bound: a revocation made at time t is known to every feed-fed verifier by
 * t + pollIntervalMs + one round trip; and in every case, no verifier accepts a token or a
 * certificate after t + maxStalenessMs without knowing the revocation (it denies instead).
 * Proof sketch: a poll that *starts* after t returns the revocation; a verifier that accepts
 * at time s had a successful poll that started after s - maxStalenessMs; if s > t +
 * maxStalenessMs, that poll started after t.
 *
 * With Redis, verifiers share the authority's store and see revocations on their next call;
 * the feed is still what carries certificate revocations to handshake-time checks.
 *
 * Certificate revocations live in a {@link CertificateRevocationStore}: with a Redis store,
 * the same Redis (shared by every replica, kept across restarts); otherwise in memory. The
 * feed pages: each response holds at most `limit` log entries and `limit` certificate
 * entries, and says `more` while either has entries left; a client asks again with the
 * cursors it got until `more` is false. Every page is a keyed range read (O(log n + limit)).
 */
import { createHash, randomUUID } from 'node:crypto'
import { z } from 'zod'
import { StoreUnavailable } from '../errors.js'
import {
  CertificateRevocationList,
  IDENTITY_KEEP_MS,
  type CertificateRevocationChecker,
  type CertificateStatusInput,
} from '../identity/revocations.js'
import { fn, parseOptions, withMethods } from '../lib/options.js'
import { SequencedLog } from '../lib/sequenced-log.js'
import {
  isCertificateRevocationStore,
  MemoryCertificateRevocationStore,
  type CertificateRevocationStore,
} from '../revocation/certificates.js'
import type { JSONWebKeySet } from '../keys/index.js'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import { isLineageStore, type LineageStore, type ReplayRevocationStore, type StoreCheck, type StoreVerdict } from '../revocation/store.js'
import type { TrustedIssuer } from '../verifier/index.js'

/** How long agent revocations stay in the feed (the memory store keeps them as long). */
const AGENT_ENTRY_KEEP_MS = 24 * 3600 * 1000
/** How long a cross-replica quarantine marker lives in a shared store. */
const QUARANTINE_KEEP_MS = 366 * 24 * 3600 * 1000
/** Entries per part (log, certificates) of one feed page, by default and at most. */
export const DEFAULT_FEED_PAGE = 5000
export const MAX_FEED_PAGE = 10_000

export type FeedEntry =
  | { readonly kind: 'token'; readonly jti: string; readonly forgetAtMs: number }
  | { readonly kind: 'agent'; readonly agentId: string; readonly atSeconds: number; readonly forgetAtMs: number }
  | { readonly kind: 'certificate'; readonly serialNumber: string; readonly forgetAtMs: number }
  | { readonly kind: 'identity'; readonly spiffeId: string; readonly atMs: number; readonly forgetAtMs: number }

/** One page of the feed, as served at `GET /v1/revocations`. */
export interface FeedPage {
  /** Identifies this feed's log; a different epoch means "start again from 0". */
  readonly epoch: string
  /** Pass back as `since` to get only newer token and agent entries. */
  readonly cursor: number
  /** Pass back as `certificates` to get only newer certificate and identity entries. */
  readonly certificateCursor: string
  /** True when entries are left: ask again at once with both cursors. */
  readonly more: boolean
  /** True when `since` was from another epoch: the page holds every live entry. */
  readonly reset: boolean
  /** The authority id (`iss`) and its JWKS, so one poll also refreshes keys. */
  readonly issuer: string
  readonly jwks: JSONWebKeySet
  readonly entries: readonly FeedEntry[]
}

function keyOf(e: FeedEntry): string {
  switch (e.kind) {
    case 'token':
      return `t:${e.jti}`
    case 'agent':
      return `a:${e.agentId}`
    case 'certificate':
      return `c:${e.serialNumber}`
    case 'identity':
      return `i:${e.spiffeId}`
  }
}

/** A UUID-v4-shaped, deterministic marker per agent (some stores accept only UUID jtis). */
function quarantineMarker(agentId: string): string {
  const h = createHash('sha256').update(`agent-trust quarantine\0${agentId}`).digest('hex')
  const variant = ((parseInt(h[16] as string, 16) & 0x3) | 0x8).toString(16)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`
}

/**
 * The authority's store with a revocation log. Create the Authority with it:
 * `Authority.create({ manifest, store: new RevocationFeed(innerStore) })`.
 */
export class RevocationFeed implements ReplayRevocationStore {
  readonly epoch: string = randomUUID()
  /** The store every check and revocation goes to (memory by default; Redis for replicas). */
  readonly store: ReplayRevocationStore
  /**
   * Revoked certificates and identities; the authority service checks every caller against
   * it. The Redis store's own (`certificateRevocations()`) when the store has one, so that
   * every replica shares them and they survive a restart; else one in memory.
   */
  readonly certificates: CertificateRevocationStore
  /** Token and agent revocations, in the order they were made. */
  readonly #log = new SequencedLog<FeedEntry>()
  readonly #now: () => number

  constructor(
    store: ReplayRevocationStore = new MemoryReplayRevocationStore(),
    options: { now?: () => number; certificates?: CertificateRevocationStore } = {},
  ) {
    this.store = store
    this.#now = options.now ?? Date.now
    const own = (store as { certificateRevocations?: () => unknown }).certificateRevocations
    const shared = typeof own === 'function' ? own.call(store) : undefined
    this.certificates = options.certificates ?? (isCertificateRevocationStore(shared) ? shared : new MemoryCertificateRevocationStore())
    if (isLineageStore(store)) {
      this.registerAgent = (r, max) => store.registerAgent(r, max)
      this.anyQuarantined = (ids) => store.anyQuarantined(ids)
      this.spawnedAgent = (id) => store.spawnedAgent(id)
      this.spawnedAgents = () => store.spawnedAgents()
    }
  }

  check(input: StoreCheck): Promise<StoreVerdict> {
    return this.store.check(input)
  }

  // Lineage goes to the underlying store (shared by every replica); absent when that store has none.
  readonly registerAgent?: LineageStore['registerAgent']
  readonly anyQuarantined?: LineageStore['anyQuarantined']
  readonly spawnedAgent?: LineageStore['spawnedAgent']
  readonly spawnedAgents?: LineageStore['spawnedAgents']

  async revokeToken(jti: string, forgetAtMs: number): Promise<void> {
    // The store first: the feed never announces what the store did not record.
    await this.store.revokeToken(jti, forgetAtMs)
    this.#append({ kind: 'token', jti, forgetAtMs })
  }

  async revokeAgent(agentId: string, atSeconds: number): Promise<void> {
    await this.store.revokeAgent(agentId, atSeconds)
    const prev = this.#log.get(`a:${agentId}`, this.#now())?.value
    const at = Math.max(atSeconds, prev?.kind === 'agent' ? prev.atSeconds : 0)
    this.#append({ kind: 'agent', agentId, atSeconds: at, forgetAtMs: this.#now() + AGENT_ENTRY_KEEP_MS })
  }

  /** Revoke one certificate by serial until `forgetAtMs` (its expiry). */
  revokeCertificate(serialNumber: string, forgetAtMs: number): Promise<void> {
    return this.certificates.revokeSerial(serialNumber, forgetAtMs)
  }

  /** Revoke every certificate of `spiffeId` issued at or before `atMs` (kept until all of them expired). */
  revokeIdentity(spiffeId: string, atMs: number, forgetAtMs: number = atMs + IDENTITY_KEEP_MS): Promise<void> {
    return this.certificates.revokeIdentity(spiffeId, atMs, forgetAtMs)
  }

  /**
   * Mark an agent quarantined in the underlying store, so that every authority replica
   * sharing it (Redis) refuses the agent, even one that never saw the revocation. Stored as
   * a revoked marker jti: it uses only the store's contract.
   */
  async quarantine(agentId: string): Promise<void> {
    await this.store.revokeToken(quarantineMarker(agentId), this.#now() + QUARANTINE_KEEP_MS)
  }

  /** True when some replica quarantined the agent (one store round trip). */
  async isQuarantined(agentId: string): Promise<boolean> {
    const now = this.#now()
    const verdict = await this.store.check({
      jti: randomUUID(),
      chain: [quarantineMarker(agentId)],
      agents: [],
      iat: Math.floor(now / 1000),
      forgetAtMs: now + 1000,
      consume: false,
    })
    return verdict === 'token-revoked'
  }

  /**
   * One page: token and agent entries after `since` (from the start when `epoch` is not this
   * feed's), certificate entries after `certificates` (from the start when absent), at most
   * `limit` of each. `more` says whether to ask again with the returned cursors.
   */
  async read(
    since: number,
    epoch: string | undefined,
    issuer: string,
    jwks: JSONWebKeySet,
    options: { certificates?: string; limit?: number } = {},
  ): Promise<FeedPage> {
    const now = this.#now()
    const limit = Math.min(options.limit ?? DEFAULT_FEED_PAGE, MAX_FEED_PAGE)
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer')
    const reset = epoch !== this.epoch
    const log = this.#log.page(reset ? 0 : since, limit, now)
    const certs = await this.certificates.page({ cursor: options.certificates, limit }, now)
    return {
      epoch: this.epoch,
      cursor: log.cursor,
      certificateCursor: certs.cursor,
      more: log.more || certs.more,
      reset,
      issuer,
      jwks,
      entries: [...log.entries.map((e) => e.value), ...certs.entries],
    }
  }

  close(): Promise<void> {
    return this.store.close()
  }

  #append(entry: FeedEntry): void {
    // A rewrite gets a new sequence number: readers past the old one see it again.
    this.#log.set(keyOf(entry), entry, entry.forgetAtMs)
  }
}

// ---- verifier side -------------------------------------------------------------------

const Jwk = z.looseObject({ kty: z.string(), kid: z.string().optional() })
const EntrySchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('token'), jti: z.string().min(1).max(128), forgetAtMs: z.number().finite() }),
  z.strictObject({
    kind: z.literal('agent'),
    agentId: z.string().min(1).max(255),
    atSeconds: z.number().int().nonnegative(),
    forgetAtMs: z.number().finite(),
  }),
  z.strictObject({ kind: z.literal('certificate'), serialNumber: z.string().regex(/^[0-9a-f]{1,40}$/), forgetAtMs: z.number().finite() }),
  z.strictObject({
    kind: z.literal('identity'),
    spiffeId: z.string().startsWith('spiffe://').max(2048),
    atMs: z.number().finite(),
    forgetAtMs: z.number().finite(),
  }),
])
export const FeedPageSchema = z.strictObject({
  epoch: z.string().min(1).max(64),
  cursor: z.number().int().nonnegative(),
  // Absent from servers that predate paging (one page then held everything).
  certificateCursor: z.string().max(128).default(''),
  more: z.boolean().default(false),
  reset: z.boolean(),
  issuer: z.string().min(1).max(255),
  jwks: z.strictObject({ keys: z.array(Jwk).max(64) }),
  entries: z.array(EntrySchema).max(2 * MAX_FEED_PAGE),
})

/** Where a feed-fed store gets its pages: the authority client's `revocations` method. */
export interface FeedSource {
  revocations(
    since: number,
    epoch: string | undefined,
    options?: { timeoutMs?: number; certificates?: string; limit?: number },
  ): Promise<FeedPage>
}

export interface RevocationFeedStoreOptions {
  readonly source: FeedSource
  /** Time between polls, ms. Default 1000. */
  readonly pollIntervalMs?: number
  /**
   * Fail closed after this long without a successful poll, ms. Default 5000. This is the
   * stated bound on how late a verifier can learn a revocation. At least 2 x pollIntervalMs.
   */
  readonly maxStalenessMs?: number
  /** Called with each failed poll (for logging; never with secrets). */
  readonly onError?: (error: unknown) => void
  /** Monotonic clock in ms (tests). Default `performance.now()`. */
  readonly now?: () => number
}

/** {@link RevocationFeedStoreOptions}, checked once before the first poll. */
const RevocationFeedStoreOptionsSchema = z
  .strictObject({
    source: withMethods<FeedSource>('revocations'),
    // The poll timer is a setTimeout, which holds at most 2^31-1 ms.
    pollIntervalMs: z
      .number()
      .min(10)
      .max(2 ** 31 - 1)
      .optional(),
    maxStalenessMs: z.number().optional(),
    onError: fn<(error: unknown) => void>().optional(),
    now: fn<() => number>().optional(),
  })
  // Stale means at least one poll was missed: below two intervals a single slow poll would fail every check.
  .refine((o) => (o.maxStalenessMs ?? 5000) >= 2 * (o.pollIntervalMs ?? 1000), {
    path: ['maxStalenessMs'],
    message: 'expected at least twice pollIntervalMs',
  })

/**
 * A verifier's replay/revocation store when the authority is remote and there is no Redis:
 * replay markers stay local (tokens are single use per audience), revocations come from the
 * authority's feed.
 *
 * @example
 * ```ts
 * const feed = await RevocationFeedStore.start({ source: authorityClient })
 * const verifier = createVerifier({ id: 'agent-database-reader', issuers: [feed.trustedIssuer()], store: feed })
 * const peer = createPeerIdentity({ trustDomain, revocations: feed.certificates })
 * ```
 */
export class RevocationFeedStore implements ReplayRevocationStore {
  readonly pollIntervalMs: number
  readonly maxStalenessMs: number
  /** Certificate revocations from the feed; refuses every certificate while the feed is stale. */
  readonly certificates: CertificateRevocationChecker
  readonly #memory = new MemoryReplayRevocationStore()
  readonly #crl = new CertificateRevocationList()
  readonly #source: FeedSource
  readonly #onError: ((error: unknown) => void) | undefined
  readonly #now: () => number
  #lastSyncStartedAt = Number.NEGATIVE_INFINITY
  #cursor = 0
  #certificateCursor = ''
  #epoch: string | undefined
  #issuer: string | undefined
  #jwks: JSONWebKeySet | undefined
  #jwksJson = ''
  #timer: NodeJS.Timeout | undefined
  #closed = false
  #inflight: Promise<void> | undefined

  private constructor(options: RevocationFeedStoreOptions) {
    parseOptions('RevocationFeedStore.start', RevocationFeedStoreOptionsSchema, options)
    const { pollIntervalMs = 1000, maxStalenessMs = 5000 } = options
    this.pollIntervalMs = pollIntervalMs
    this.maxStalenessMs = maxStalenessMs
    this.#source = options.source
    this.#onError = options.onError
    this.#now = options.now ?? (() => performance.now())
    const crl = this.#crl
    this.certificates = Object.freeze({
      isRevoked: (c: CertificateStatusInput, nowMs?: number): boolean => {
        this.#assertFresh()
        return crl.isRevoked(c, nowMs)
      },
    })
  }

  /** Create, complete a first poll (throws `ERR_STORE_UNAVAILABLE` if it fails), then poll in the background. */
  static async start(options: RevocationFeedStoreOptions): Promise<RevocationFeedStore> {
    const store = new RevocationFeedStore(options)
    try {
      await store.syncNow()
    } catch (cause) {
      throw new StoreUnavailable("the authority's revocation feed could not be read", { cause, details: { rule: 'feed' } })
    }
    store.#schedule()
    return store
  }

  /** Milliseconds since the last successful poll started. */
  get stalenessMs(): number {
    return this.#now() - this.#lastSyncStartedAt
  }

  /** The authority's keys, as last read from the feed (same object until they change). */
  trustedIssuer(): TrustedIssuer {
    const issuer = this.#issuer
    if (issuer === undefined) throw new TypeError('the feed has not been read yet')
    return { issuer, jwks: () => this.#jwks ?? { keys: [] } }
  }

  async check(input: StoreCheck): Promise<StoreVerdict> {
    this.#assertFresh()
    return this.#memory.checkSync(input)
  }

  /** Local only: a verifier has no authority to revoke for others. */
  revokeToken(jti: string, forgetAtMs: number): Promise<void> {
    return this.#memory.revokeToken(jti, forgetAtMs)
  }

  revokeAgent(agentId: string, atSeconds: number): Promise<void> {
    return this.#memory.revokeAgent(agentId, atSeconds)
  }

  /** Poll once now (concurrent callers share one poll). Rejects when the poll fails. */
  syncNow(): Promise<void> {
    this.#inflight ??= this.#poll().finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    await this.#memory.close()
  }

  #assertFresh(): void {
    if (this.#now() - this.#lastSyncStartedAt > this.maxStalenessMs) {
      throw new StoreUnavailable(`the authority's revocation feed has not been read for more than ${this.maxStalenessMs} ms`, {
        details: { rule: 'feed-stale' },
      })
    }
  }

  async #poll(): Promise<void> {
    const startedAt = this.#now()
    // The poll must finish well inside the staleness bound to count.
    const timeoutMs = Math.max(50, Math.min(this.maxStalenessMs - this.pollIntervalMs, 10_000))
    // Page until the feed says nothing is left; the poll counts from when its first page started.
    let page: z.infer<typeof FeedPageSchema>
    do {
      const asked = `${this.#epoch ?? ''} ${this.#cursor} ${this.#certificateCursor}`
      page = FeedPageSchema.parse(
        await this.#source.revocations(this.#cursor, this.#epoch, { timeoutMs, certificates: this.#certificateCursor }),
      )
      await this.#apply(page)
      // A page that says "more" must move a cursor, or paging would never end.
      if (page.more && `${page.epoch} ${page.cursor} ${page.certificateCursor}` === asked)
        throw new StoreUnavailable("the authority's revocation feed repeated a page", { details: { rule: 'feed' } })
    } while (page.more && !this.#closed)
    if (page.more) return
    this.#lastSyncStartedAt = Math.max(this.#lastSyncStartedAt, startedAt)
  }

  async #apply(page: z.infer<typeof FeedPageSchema>): Promise<void> {
    for (const e of page.entries) {
      switch (e.kind) {
        case 'token':
          await this.#memory.revokeToken(e.jti, e.forgetAtMs)
          break
        case 'agent':
          await this.#memory.revokeAgent(e.agentId, e.atSeconds)
          break
        case 'certificate':
          this.#crl.revokeSerial(e.serialNumber, e.forgetAtMs)
          break
        case 'identity':
          this.#crl.revokeIdentity(e.spiffeId, e.atMs, e.forgetAtMs)
          break
      }
    }
    const json = JSON.stringify(page.jwks)
    if (json !== this.#jwksJson) {
      // A new object only when the keys changed: the verifier's key ring compares by identity.
      this.#jwks = Object.freeze(JSON.parse(json)) as JSONWebKeySet
      this.#jwksJson = json
    }
    this.#issuer = page.issuer
    this.#epoch = page.epoch
    this.#cursor = page.cursor
    this.#certificateCursor = page.certificateCursor
  }

  #schedule(): void {
    if (this.#closed) return
    this.#timer = setTimeout(() => {
      this.syncNow()
        .catch((e: unknown) => this.#onError?.(e))
        .finally(() => this.#schedule())
    }, this.pollIntervalMs)
    this.#timer.unref()
  }
}
