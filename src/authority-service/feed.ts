/**
 * Revocation reaches every verifier.
 *
 * - {@link RevocationFeed} (authority side) is the authority's store: it forwards to the real
 *   store (memory or Redis) and keeps a log of every revocation (tokens, agents, certificates)
 *   that the service publishes at `GET /v1/revocations`.
 * - `RevocationFeedStore` (verifier side, `feed-store.ts`) is a `ReplayRevocationStore` fed
 *   by polling that feed. It fails closed: if it has not completed a poll for longer than
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
import { IDENTITY_KEEP_MS } from '../identity/revocations.js'
import { SequencedLog } from '../lib/sequenced-log.js'
import {
  isCertificateRevocationStore,
  MemoryCertificateRevocationStore,
  type CertificateRevocationStore,
} from '../revocation/certificates.js'
import type { JSONWebKeySet } from '../keys/index.js'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import {
  AGENT_QUARANTINED,
  hasStoreClock,
  isLineageStore,
  type LineageStore,
  type ReplayRevocationStore,
  type StoreCheck,
  type StoreClock,
  type StoreVerdict,
} from '../revocation/store.js'

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
    // The underlying store's lineage, batch revocation and clock are the feed's too, so an
    // authority over the feed keeps the same cross-replica semantics as over the store itself;
    // every agent a call revokes or retires in the store is also announced in the feed.
    if (isLineageStore(store)) {
      this.registerAgent = async (r, max, idleMs) => {
        const outcome = await store.registerAgent(r, max, idleMs)
        this.#quarantined(outcome.retired)
        return outcome
      }
      this.retireAgent = async (id) => this.#quarantined(await store.retireAgent(id))
      this.idleAgents = async (ids, idleMs, mode) => this.#quarantined(await store.idleAgents(ids, idleMs, mode))
      this.retireIdleAgents = async (idleMs) => this.#quarantined(await store.retireIdleAgents(idleMs))
      this.anyQuarantined = (ids) => store.anyQuarantined(ids)
      this.spawnedAgent = (id) => store.spawnedAgent(id)
      this.spawnedAgents = () => store.spawnedAgents()
    }
    const batch = store.revokeAgents
    if (typeof batch === 'function') {
      this.revokeAgents = async (ids, atSeconds) => {
        await batch.call(store, ids, atSeconds)
        for (const id of ids) this.#agentEntry(id, atSeconds)
      }
    }
    if (hasStoreClock(store)) {
      this.trustStates = (ids) => store.trustStates(ids)
      this.revokeAgentNow = async (agentId) => {
        const at = await store.revokeAgentNow(agentId)
        this.#agentEntry(agentId, at)
        return at
      }
    }
  }

  check(input: StoreCheck): Promise<StoreVerdict> {
    return this.store.check(input)
  }

  // Lineage goes to the underlying store (shared by every replica); absent when that store has none.
  readonly registerAgent?: LineageStore['registerAgent']
  readonly retireAgent?: LineageStore['retireAgent']
  readonly idleAgents?: LineageStore['idleAgents']
  readonly retireIdleAgents?: LineageStore['retireIdleAgents']
  readonly anyQuarantined?: LineageStore['anyQuarantined']
  readonly spawnedAgent?: LineageStore['spawnedAgent']
  readonly spawnedAgents?: LineageStore['spawnedAgents']
  readonly revokeAgents?: ReplayRevocationStore['revokeAgents']
  // The store's clock (the Redis store): levels and revocation times dated by it.
  readonly trustStates?: StoreClock['trustStates']
  readonly revokeAgentNow?: StoreClock['revokeAgentNow']

  /** Agents the store quarantined (retired): announced in the feed as revoked for good. */
  #quarantined(ids: readonly string[]): string[] {
    for (const id of ids) this.#agentEntry(id, AGENT_QUARANTINED)
    return [...ids]
  }

  async revokeToken(jti: string, forgetAtMs: number): Promise<void> {
    // The store first: the feed never announces what the store did not record.
    await this.store.revokeToken(jti, forgetAtMs)
    this.#append({ kind: 'token', jti, forgetAtMs })
  }

  async revokeAgent(agentId: string, atSeconds: number): Promise<void> {
    await this.store.revokeAgent(agentId, atSeconds)
    this.#agentEntry(agentId, atSeconds)
  }

  /** The agent's entry in the feed: the latest revocation time it has had. */
  #agentEntry(agentId: string, atSeconds: number): void {
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
