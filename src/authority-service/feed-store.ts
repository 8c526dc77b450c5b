/**
 * The verifier side of the revocation feed: a `ReplayRevocationStore` fed by polling the
 * authority's `GET /v1/revocations` pages (see `feed.ts` for the bound it keeps). Fails
 * closed: past `maxStalenessMs` without a completed poll, checks and certificate checks refuse.
 */
import { z } from 'zod'
import { StoreUnavailable } from '../errors.js'
import { CertificateRevocationList, type CertificateRevocationChecker, type CertificateStatusInput } from '../identity/revocations.js'
import { fn, parseOptions, withMethods } from '../lib/options.js'
import type { JSONWebKeySet } from '../keys/index.js'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import type { ReplayRevocationStore, StoreCheck, StoreVerdict } from '../revocation/store.js'
import type { TrustedIssuer } from '../verifier/index.js'
import { MAX_FEED_PAGE, type FeedPage } from './feed.js'

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
