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
 */
import { createHash, randomUUID } from 'node:crypto'
import { z } from 'zod'
import { StoreUnavailable } from '../errors.js'
import { CertificateRevocationList, type CertificateRevocationChecker, type CertificateStatusInput } from '../identity/revocations.js'
import type { JSONWebKeySet } from '../keys/index.js'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import { isLineageStore, type LineageStore, type ReplayRevocationStore, type StoreCheck, type StoreVerdict } from '../revocation/store.js'
import type { TrustedIssuer } from '../verifier/index.js'

/** How long agent revocations stay in the feed (the memory store keeps them as long). */
const AGENT_ENTRY_KEEP_MS = 24 * 3600 * 1000
/** How long a cross-replica quarantine marker lives in a shared store. */
const QUARANTINE_KEEP_MS = 366 * 24 * 3600 * 1000

export type FeedEntry =
  | { readonly kind: 'token'; readonly jti: string; readonly forgetAtMs: number }
  | { readonly kind: 'agent'; readonly agentId: string; readonly atSeconds: number; readonly forgetAtMs: number }
  | { readonly kind: 'certificate'; readonly serialNumber: string; readonly forgetAtMs: number }
  | { readonly kind: 'identity'; readonly spiffeId: string; readonly atMs: number; readonly forgetAtMs: number }

/** One page of the feed, as served at `GET /v1/revocations`. */
export interface FeedPage {
  /** Identifies this feed's log; a different epoch means "start again from 0". */
  readonly epoch: string
  /** Pass back as `since` to get only newer entries. */
  readonly cursor: number
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
  /** Revoked certificates; the authority service checks callers against it. */
  readonly certificates = new CertificateRevocationList()
  readonly #log = new Map<string, { seq: number; entry: FeedEntry }>()
  #seq = 0
  readonly #now: () => number

  constructor(store: ReplayRevocationStore = new MemoryReplayRevocationStore(), options: { now?: () => number } = {}) {
    this.store = store
    this.#now = options.now ?? Date.now
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
    const prev = this.#log.get(`a:${agentId}`)?.entry
    const at = Math.max(atSeconds, prev?.kind === 'agent' ? prev.atSeconds : 0)
    this.#append({ kind: 'agent', agentId, atSeconds: at, forgetAtMs: this.#now() + AGENT_ENTRY_KEEP_MS })
  }

  /** Revoke one certificate by serial until `forgetAtMs` (its expiry). */
  revokeCertificate(serialNumber: string, forgetAtMs: number): void {
    this.certificates.revokeSerial(serialNumber, forgetAtMs)
    this.#append({ kind: 'certificate', serialNumber: serialNumber.toLowerCase(), forgetAtMs })
  }

  /** Revoke every certificate of `spiffeId` issued at or before `atMs`. */
  revokeIdentity(spiffeId: string, atMs: number): void {
    this.certificates.revokeIdentity(spiffeId, atMs)
    const e = this.certificates.entries(this.#now()).identities.find((i) => i.spiffeId === spiffeId)
    if (e !== undefined) this.#append({ kind: 'identity', spiffeId, atMs: e.atMs, forgetAtMs: e.forgetAtMs })
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

  /** Entries after `since` (all live ones when `epoch` is not this feed's). */
  read(since: number, epoch: string | undefined, issuer: string, jwks: JSONWebKeySet): FeedPage {
    const now = this.#now()
    const reset = epoch !== this.epoch
    const from = reset ? 0 : since
    const entries: FeedEntry[] = []
    for (const [k, v] of this.#log) {
      if (v.entry.forgetAtMs <= now) {
        this.#log.delete(k)
        continue
      }
      if (v.seq > from) entries.push(v.entry)
    }
    return { epoch: this.epoch, cursor: this.#seq, reset, issuer, jwks, entries }
  }

  close(): Promise<void> {
    return this.store.close()
  }

  #append(entry: FeedEntry): void {
    const k = keyOf(entry)
    // Re-inserting moves the entry to the end: the map stays in sequence order.
    this.#log.delete(k)
    this.#log.set(k, { seq: ++this.#seq, entry })
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
  reset: z.boolean(),
  issuer: z.string().min(1).max(255),
  jwks: z.strictObject({ keys: z.array(Jwk).max(64) }),
  entries: z.array(EntrySchema).max(100_000),
})

/** Where a feed-fed store gets its pages: the authority client's `revocations` method. */
export interface FeedSource {
  revocations(since: number, epoch: string | undefined, options?: { timeoutMs?: number }): Promise<FeedPage>
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
  #epoch: string | undefined
  #issuer: string | undefined
  #jwks: JSONWebKeySet | undefined
  #jwksJson = ''
  #timer: NodeJS.Timeout | undefined
  #closed = false
  #inflight: Promise<void> | undefined

  private constructor(options: RevocationFeedStoreOptions) {
    const { pollIntervalMs = 1000, maxStalenessMs = 5000 } = options
    if (!Number.isFinite(pollIntervalMs) || pollIntervalMs < 10) throw new TypeError('pollIntervalMs must be at least 10')
    if (!Number.isFinite(maxStalenessMs) || maxStalenessMs < 2 * pollIntervalMs)
      throw new TypeError('maxStalenessMs must be at least twice pollIntervalMs')
    if (typeof options.source?.revocations !== 'function')
      throw new TypeError('source must have a revocations(since, epoch) method (the authority client)')
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
    const raw = await this.#source.revocations(this.#cursor, this.#epoch, { timeoutMs })
    const page = FeedPageSchema.parse(raw)
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
    this.#lastSyncStartedAt = Math.max(this.#lastSyncStartedAt, startedAt)
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
