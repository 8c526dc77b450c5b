/**
 * The authority: the only component that signs capability tokens. It holds the signing keys
 * and the manifest; an agent can only *ask* it, and it refuses anything the manifest does not
 * allow, so a compromised orchestrator cannot mint its way into every sub-agent. Keep it out
 * of any LLM-driven process.
 *
 * This class is the public face; each job lives in its own module: minting (`mint.ts`),
 * delegation and spawn (`delegation.ts`), revocation (`revocation.ts`), the trust-change
 * workflow (`approvals.ts`), over the shared state of `core.ts`.
 */
import type { AgentDeclaration } from '../config/manifest.js'
import { parseManifest } from '../config/manifest.js'
import { KeySet, type JSONWebKeySet } from '../keys/index.js'
import { createKeyManager, type KeyManager } from '../keys/rotation.js'
import { MemoryKeyStore } from '../keys/store.js'
import type { Operation, TrustLevel } from '../policy/trust.js'
import type { ReplayRevocationStore } from '../revocation/store.js'
import { Verifier, type VerifierOptions } from '../verifier/index.js'
import { TrustChangeWorkflow } from './approvals.js'
import { AuthorityCore } from './core.js'
import { exchange, spawn } from './delegation.js'
import { mint, mintForTool } from './mint.js'
import type { AgentRegistry } from './registry.js'
import { retireAgent, revokeAgent, revokeToken } from './revocation.js'
import { MemoryTrustChangeStore } from './trust-changes.js'
import { RequestInvalid } from '../errors.js'
import type {
  ApprovalDecision,
  AuthorityOptions,
  CapabilityIssuer,
  ExchangeRequest,
  MintRequest,
  RetireRequest,
  SpawnRequest,
  ToolMintRequest,
  TrustChangeRequest,
  TrustChangeStatus,
  TrustChangeStore,
} from './types.js'

/** The idle sweep runs every quarter of the idle time, and at least this often. */
const IDLE_SWEEP_MAX_MS = 15 * 60 * 1000

/**
 * @example
 * ```ts
 * const authority = await Authority.create({ manifest })
 * const token = await authority.mint({ subject: 'agent-summarizer-v2', audience: 'agent-database-reader',
 *   scope: ['db:read:documents:namespace:user-123'], operation: 'read', context })
 * ```
 */
export class Authority implements CapabilityIssuer {
  readonly #core: AuthorityCore
  readonly #approvals: TrustChangeWorkflow
  readonly #keyManager: KeyManager | undefined
  readonly #idleSweep: ReturnType<typeof setInterval> | undefined

  private constructor(core: AuthorityCore, approvals: TrustChangeWorkflow, keyManager: KeyManager | undefined) {
    this.#core = core
    this.#approvals = approvals
    this.#keyManager = keyManager
    // Idle children are also retired when they next ask or their parent is full; the sweep
    // retires the ones nobody asks for again, so that the store does not keep them forever.
    // A failed sweep is retried at the next tick (nothing is allowed by a sweep).
    if (core.idleMs > 0) {
      this.#idleSweep = setInterval(
        () => void this.retireIdleChildren().catch(() => undefined),
        Math.min(core.idleMs / 4, IDLE_SWEEP_MAX_MS),
      )
      this.#idleSweep.unref()
    }
  }

  static async create(options: AuthorityOptions): Promise<Authority> {
    const manifest = parseManifest(options.manifest)
    let keys: KeySet
    let manager: KeyManager | undefined
    if (options.keys instanceof KeySet) keys = options.keys
    else if (options.keys !== undefined) keys = await KeySet.create(options.keys)
    else {
      // No keys given: ephemeral keys that still rotate on the manifest's schedule (24 h by
      // default). Persistent or shared keys come from `createKeyManager` (see docs/stores.md).
      manager = await createKeyManager({
        store: new MemoryKeyStore(),
        rotationIntervalMs: Math.round(manifest.authority.keyRotationHours * 3_600_000),
      })
      manager.start()
      keys = manager.keys
    }
    const core = new AuthorityCore(manifest, keys, options)
    if (core.lineage !== undefined) {
      // Spawned agents survive a restart: parents before children (fewer ancestors first).
      const records = await core.lineage.spawnedAgents()
      records.sort((a, b) => a.ancestors.length - b.ancestors.length)
      // A record whose parent is gone (retired meanwhile) is skipped: nothing can act for it.
      for (const r of records) if (core.registry.has(r.ancestors[0] ?? '')) core.restore(r)
    }
    const trustChanges = options.trustChanges ?? (await defaultTrustChanges(core.store))
    const approvals = new TrustChangeWorkflow(core, trustChanges, options.approver)
    if (options.trustChanges !== undefined || !(trustChanges instanceof MemoryTrustChangeStore)) await approvals.load()
    return new Authority(core, approvals, manager)
  }

  /** The `iss` of every token this authority signs. */
  get id(): string {
    return this.#core.id
  }

  /** The validated, frozen manifest it was created with. */
  get manifest(): AuthorityCore['manifest'] {
    return this.#core.manifest
  }

  /** The signing keys (the active one signs; all published ones verify). */
  get keys(): KeySet {
    return this.#core.keys
  }

  /** Where revocations and quarantines are written (shared with verifiers). */
  get store(): ReplayRevocationStore {
    return this.#core.store
  }

  /** The live view of the agents: the manifest plus spawned children, levels and quarantines. */
  get registry(): AgentRegistry {
    return this.#core.registry
  }

  /** Stop background work (the key rotation timer of ephemeral keys). Idempotent. */
  close(): void {
    this.#keyManager?.stop()
    if (this.#idleSweep !== undefined) clearInterval(this.#idleSweep)
  }

  /** The public keys verifiers trust. Same object until keys change. */
  jwks(): JSONWebKeySet {
    return this.#core.keys.jwks()
  }

  /** A trusted-issuer entry for a verifier in this process. */
  trustedIssuer(): { issuer: string; jwks: () => JSONWebKeySet } {
    const keys = this.#core.keys
    return { issuer: this.#core.id, jwks: () => keys.jwks() }
  }

  /**
   * A verifier in this process that trusts this authority and shares its store, so it sees
   * revocations at once. Across processes, give verifiers the JWKS and a shared (Redis) store.
   */
  createVerifier(options: Omit<VerifierOptions, 'issuers' | 'store'> & { store?: ReplayRevocationStore }): Verifier {
    return new Verifier({
      ...options,
      issuers: [this.trustedIssuer()],
      store: options?.store ?? this.#core.store,
      clockToleranceSeconds: options?.clockToleranceSeconds ?? this.#core.tolerance,
    })
  }

  /** An agent as this authority sees it now, or undefined when it is not registered. */
  agent(id: string): Readonly<{ declaration: AgentDeclaration; level: TrustLevel; revoked: boolean }> | undefined {
    const a = this.#core.registry.get(id)
    return a === undefined ? undefined : { declaration: a.declaration, level: a.level, revoked: a.revoked }
  }

  /** A token for exact scopes the subject's grants cover, for an operation its level permits. */
  /**
   * Resolves when the agent is known (listed, or spawned and recorded in the shared store by
   * any replica) and neither it nor a spawn ancestor is quarantined anywhere; otherwise
   * rejects with `ERR_AGENT_UNKNOWN` or `ERR_AGENT_REVOKED` (one store round trip). For what
   * must not outlive a revocation made on another replica, such as a certificate renewal.
   */
  async assertInForce(agentId: string): Promise<void> {
    await this.#core.activeAgents([agentId])
  }

  mint(request: MintRequest): Promise<string> {
    if (!isRequestObject(request)) return Promise.reject(requestNotAnObject('mint', '{ subject, audience, scope, operation, context }'))
    return mint(this.#core, request)
  }

  /** A token for one tool call: the scope comes from the callee's tool declaration and the arguments. */
  mintForTool(request: ToolMintRequest): Promise<{ token: string; scope: string; operation: Operation }> {
    if (!isRequestObject(request)) return Promise.reject(requestNotAnObject('mintForTool', '{ subject, audience, tool, args, context }'))
    return mintForTool(this.#core, request)
  }

  /** On-behalf-of exchange (RFC 8693) of a token the holder received, to a next audience. */
  exchange(request: ExchangeRequest): Promise<string> {
    if (!isRequestObject(request)) return Promise.reject(requestNotAnObject('exchange', '{ token, holder, audience }'))
    return exchange(this.#core, request)
  }

  /** Register a sub-agent of an L3 parent. The child never exceeds its parent. */
  spawn(request: SpawnRequest): Promise<AgentDeclaration> {
    if (!isRequestObject(request)) return Promise.reject(requestNotAnObject('spawn', '{ parent, child }'))
    return spawn(this.#core, request)
  }

  /**
   * Retire a spawned agent whose task is done, with every agent it spawned (asked by its
   * parent or an ancestor): their tokens are refused from now on everywhere, their ids stay
   * taken for a day, and the parent's child slot is free again. Returns the ids retired (none
   * when another authority retired it first).
   */
  retire(request: RetireRequest): Promise<string[]> {
    if (!isRequestObject(request)) return Promise.reject(requestNotAnObject('retire', '{ parent, agentId }'))
    return retireAgent(this.#core, request)
  }

  /**
   * Retire every spawned agent that has been idle longer than `retireIdleChildrenAfterSeconds`
   * (across every authority sharing the store). Runs on a timer by itself; returns the ids
   * retired. Throws `ERR_STORE_UNAVAILABLE` when the store cannot be read.
   */
  async retireIdleChildren(): Promise<string[]> {
    const core = this.#core
    if (core.idleMs === 0 || core.lineage === undefined) return []
    const ids = await core.lineage.retireIdleAgents(core.idleMs)
    core.forgetRetired(ids, 'idle')
    return ids
  }

  /** Revoke one token by jti; its delegated descendants die with it. */
  revokeToken(jti: string, options: { by?: string } = {}): Promise<void> {
    return revokeToken(this.#core, jti, options)
  }

  /**
   * Quarantine an agent and every agent it spawned: none are minted here again, and every
   * token of theirs, issued before or after (by any authority sharing the store), is
   * rejected by every verifier sharing the store. Returns the ids quarantined.
   */
  revokeAgent(agentId: string, options: { by?: string } = {}): Promise<string[]> {
    return revokeAgent(this.#core, agentId, options)
  }

  /**
   * Ask for a trust-level change. Nothing changes until a human approves: through the
   * configured approver callback, through {@link decideTrustChange}, or from another
   * process (`agent-trust trust approve`) through a shared trust-change store, picked up
   * by {@link syncTrustChanges}.
   */
  requestTrustChange(request: { agentId: string; level: TrustLevel; reason: string; requestedBy: string }): Promise<TrustChangeRequest> {
    return this.#approvals.request(request)
  }

  /** Requests as this authority last saw them (its own, and others' as of the last {@link syncTrustChanges}). */
  listTrustChanges(status?: TrustChangeStatus): TrustChangeRequest[] {
    return this.#approvals.list(status)
  }

  /**
   * Record a human decision (exactly one decision per request wins, across processes).
   * Approving applies the level and revokes the agent's outstanding tokens. A request made
   * against a level the agent no longer has, or above a spawned agent's parent, is refused.
   */
  decideTrustChange(id: string, decision: ApprovalDecision): Promise<TrustChangeRequest> {
    return this.#approvals.decide(id, decision)
  }

  /**
   * Pick up requests and decisions made elsewhere (the CLI, another replica) and apply the
   * approved changes this authority has not applied yet, in the order they were decided;
   * each revokes the agent's outstanding tokens. Call it on a timer (every few seconds).
   * Returns the ids applied. Throws `ERR_STORE_UNAVAILABLE` when the store cannot be read.
   */
  syncTrustChanges(): Promise<string[]> {
    return this.#approvals.sync()
  }
}

/**
 * Trust changes live where revocations do: in the Redis of a Redis revocation store (shared
 * by every replica, ordered by the store), else in this process's memory. Loaded on demand,
 * so that an authority without Redis never loads the Redis client.
 */
async function defaultTrustChanges(given: ReplayRevocationStore): Promise<TrustChangeStore> {
  // The authority service's revocation feed in front of a store: the store behind it decides.
  const feed = given as unknown as { epoch?: unknown; store?: unknown }
  const store = typeof feed.epoch === 'string' && typeof feed.store === 'object' && feed.store !== null ? feed.store : given
  // Recognised by shape, not by class: the Redis store may come from another copy of the
  // package, and naming its class here would put the Redis client in the root entry's graph.
  const s = store as unknown as { prefix?: unknown; commandTimeoutMs?: unknown; client?: unknown; spawnedAgents?: unknown }
  if (
    typeof s.prefix === 'string' &&
    typeof s.commandTimeoutMs === 'number' &&
    s.client !== undefined &&
    typeof s.spawnedAgents === 'function'
  ) {
    const { RedisTrustChangeStore } = await import('./trust-changes-redis.js')
    return new RedisTrustChangeStore(store as unknown as ConstructorParameters<typeof RedisTrustChangeStore>[0])
  }
  return new MemoryTrustChangeStore()
}

function isRequestObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A call without its request object is a programming error, named as such (nothing was decided). */
function requestNotAnObject(method: string, shape: string): RequestInvalid {
  return new RequestInvalid(`authority.${method}() needs a request object ${shape}`, { details: { rule: 'request' } })
}
