/**
 * What every job of the authority shares: the manifest's live registry, the signing keys,
 * the store revocations go to, the audit log, and the checks each job starts with (is the
 * agent known and not quarantined, is the lifetime within bounds, are the scopes exact).
 * Minting, delegation, revocation and approvals are functions over this state.
 */
import type { AuditAction, AuditEventInput, AuditLog } from '../audit/types.js'
import { discardAudit } from '../audit/types.js'
import type { Manifest } from '../config/manifest.js'
import { AgentSchema } from '../config/manifest.js'
import {
  AgentRevoked,
  AgentUnknown,
  ConfigInvalid,
  DelegationDepth,
  ScopeInvalid,
  StoreUnavailable,
  TokenClaims,
  TokenLifetime,
  type AgentTrustError,
} from '../errors.js'
import type { KeySet } from '../keys/index.js'
import { nowSeconds } from '../lib/time.js'
import { isAgentId, type AuditContext, type CapabilityClaims } from '../policy/claims.js'
import {
  DEFAULT_IDLE_RETIREMENT_SECONDS,
  DEFAULT_MAX_CHILDREN_PER_PARENT,
  MAX_IDLE_RETIREMENT_SECONDS,
  MIN_IDLE_RETIREMENT_SECONDS,
  MAX_ANCESTRY_CLAIM,
  MAX_CHILDREN_PER_PARENT,
  MAX_CONTEXT_VALUE_LENGTH,
  MAX_SCOPES_PER_TOKEN,
  MAX_TOKEN_LIFETIME_SECONDS,
} from '../policy/limits.js'
import { isExactScope } from '../policy/scopes.js'
import { isTrustLevel, minLevel, type TrustLevel } from '../policy/trust.js'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import {
  AGENT_QUARANTINED,
  hasStoreClock,
  isLineageStore,
  type LineageStore,
  type ReplayRevocationStore,
  type SpawnedAgentRecord,
  type StoreClock,
} from '../revocation/store.js'
import { signToken, signTokenOffloaded } from '../tokens/jws.js'
import { toAgentTrustError, VerificationCore } from '../verifier/index.js'
import { AgentRegistry, type AgentState } from './registry.js'
import type { AuthorityOptions } from './types.js'

/** The agents of a request as they stand now, and the `iat` a token for its subjects gets. */
export interface AgentsInForce {
  readonly states: AgentState[]
  readonly issuedAt: number
}
import { hasUnprintable } from '../policy/printable.js'
import { refusedEvent, revoked, type AuditFields } from '../audit/events.js'

export class AuthorityCore {
  readonly id: string
  readonly manifest: Manifest
  readonly keys: KeySet
  readonly store: ReplayRevocationStore
  readonly registry: AgentRegistry
  /** The verifier's own pipeline, for tokens handed back to the authority (exchange). */
  readonly verification: VerificationCore
  readonly tolerance: number
  /** Per agent: the earliest `iat` it may be issued (after a trust change revoked its tokens). */
  readonly minIat = new Map<string, number>()
  /** The store's lineage side, when it has one (both built-in stores do). */
  readonly lineage: LineageStore | undefined
  /** The store's clock and trust levels, when it keeps them (the Redis store). */
  readonly clock: StoreClock | undefined
  readonly maxChildren: number
  /** Idle retirement of spawned agents, ms (0: off; only with a lineage store). */
  readonly idleMs: number
  /** The store when it is the in-memory one with its own quarantine check: asked without a promise. */
  readonly #memoryLineage: MemoryReplayRevocationStore | undefined
  readonly #audit: AuditLog
  readonly #ttl: number
  readonly #offload: boolean

  constructor(manifest: Manifest, keys: KeySet, options: AuthorityOptions) {
    this.manifest = manifest
    this.id = manifest.authority.id
    this.keys = keys
    this.store = options.store ?? new MemoryReplayRevocationStore()
    this.registry = new AgentRegistry(manifest)
    this.lineage = isLineageStore(this.store) ? this.store : undefined
    this.clock = this.lineage !== undefined && hasStoreClock(this.store) ? this.store : undefined
    // Only the class's own check: a subclass that overrides it (to count, to fail) is asked its way.
    this.#memoryLineage =
      this.store instanceof MemoryReplayRevocationStore &&
      this.store.anyQuarantined === MemoryReplayRevocationStore.prototype.anyQuarantined
        ? this.store
        : undefined
    const max = options.maxChildrenPerParent ?? DEFAULT_MAX_CHILDREN_PER_PARENT
    if (!Number.isInteger(max) || max < 1 || max > MAX_CHILDREN_PER_PARENT)
      throw new ConfigInvalid(`Authority.create: maxChildrenPerParent must be an integer from 1 to ${MAX_CHILDREN_PER_PARENT}`, {
        details: { rule: 'maxChildrenPerParent' },
      })
    this.maxChildren = max
    const idle =
      options.retireIdleChildrenAfterSeconds === undefined ? DEFAULT_IDLE_RETIREMENT_SECONDS : options.retireIdleChildrenAfterSeconds
    if (
      idle !== false &&
      (!Number.isInteger(idle) || (idle as number) < MIN_IDLE_RETIREMENT_SECONDS || (idle as number) > MAX_IDLE_RETIREMENT_SECONDS)
    )
      throw new ConfigInvalid(
        `Authority.create: retireIdleChildrenAfterSeconds must be false or an integer from ${MIN_IDLE_RETIREMENT_SECONDS} to ${MAX_IDLE_RETIREMENT_SECONDS}`,
        { details: { rule: 'retireIdleChildrenAfterSeconds' } },
      )
    this.idleMs = idle === false || this.lineage === undefined ? 0 : idle * 1000
    this.#audit = options.audit ?? discardAudit
    this.#ttl = manifest.authority.tokenTtlSeconds
    this.tolerance = manifest.authority.clockToleranceSeconds
    this.#offload = options.cryptoOffload ?? false
    this.verification = new VerificationCore({
      issuers: [{ issuer: this.id, jwks: () => this.keys.jwks() }],
      store: this.store,
      clockToleranceSeconds: this.tolerance,
    })
  }

  sign(claims: CapabilityClaims): string | Promise<string> {
    const { kid, privateKey } = this.keys.active()
    return this.#offload ? signTokenOffloaded(claims, kid, privateKey) : signToken(claims, kid, privateKey)
  }

  /**
   * Revoke every token of `agentId` issued so far (a trust change). With a store clock the
   * store dates it; otherwise this process's clock, up to any later minimum already set.
   * Tokens minted here afterwards get a later `iat`, so they survive it.
   */
  async revokeIssuedSoFar(agentId: string): Promise<void> {
    // With a store clock, the next mint reads the revocation time from the store itself.
    if (this.clock !== undefined) {
      await this.clock.revokeAgentNow(agentId)
      return
    }
    const at = Math.max(nowSeconds(), this.minIat.get(agentId) ?? 0)
    this.minIat.set(agentId, at + 1)
    await this.store.revokeAgent(agentId, at)
  }

  lifetime(ttl: number | undefined): number {
    const t = ttl ?? this.#ttl
    if (!Number.isInteger(t) || t < 1 || t > MAX_TOKEN_LIFETIME_SECONDS)
      throw new TokenLifetime(`ttlSeconds must be an integer from 1 to ${MAX_TOKEN_LIFETIME_SECONDS}`)
    return t
  }

  checkScopes(scope: readonly string[]): string[] {
    if (!Array.isArray(scope) || scope.length === 0 || scope.length > MAX_SCOPES_PER_TOKEN)
      throw new ScopeInvalid(`a token needs 1-${MAX_SCOPES_PER_TOKEN} exact scopes`)
    for (const s of scope)
      if (!isExactScope(s)) throw new ScopeInvalid('tokens carry exact scopes only: no wildcards, segments of [A-Za-z0-9._@/+-]')
    return scope.length === 1 ? [scope[0] as string] : [...new Set(scope)]
  }

  knownAgent(id: string): AgentState {
    const a = typeof id === 'string' ? this.registry.get(id) : undefined
    if (a === undefined)
      throw new AgentUnknown(`agent "${String(id).slice(0, 64)}" is not in the manifest`, { details: { agentId: String(id).slice(0, 64) } })
    return a
  }

  activeAgent(id: string): AgentState {
    const a = this.knownAgent(id)
    if (a.revoked) throw new AgentRevoked(`agent "${id}" is revoked`, { details: { agentId: id } })
    return a
  }

  /**
   * An agent known here or spawned by another authority sharing the store (then loaded from
   * the store, ancestors first). Unknown anywhere: `ERR_AGENT_UNKNOWN`.
   */
  async resolveAgent(id: string): Promise<AgentState> {
    const local = typeof id === 'string' ? this.registry.get(id) : undefined
    if (local !== undefined || this.lineage === undefined || !isAgentId(id)) return local ?? this.knownAgent(id)
    const record = await this.lineage.spawnedAgent(id)
    if (record === undefined) return this.knownAgent(id)
    for (const a of [...record.ancestors].reverse()) if (!this.registry.has(a)) await this.resolveAgent(a)
    this.restore(record)
    return this.knownAgent(id)
  }

  /** Add a spawned agent read from the store (validated again: the store is data). */
  restore(record: SpawnedAgentRecord): void {
    if (this.registry.has(record.id)) return
    const parsed = AgentSchema.safeParse(record.declaration)
    if (
      !parsed.success ||
      parsed.data.id !== record.id ||
      parsed.data.parent !== record.ancestors[0] ||
      !this.registry.has(record.ancestors[0] ?? '')
    )
      throw new StoreUnavailable('a spawned agent record in the store is invalid; the call was denied', { details: { rule: 'lineage' } })
    this.registry.add(parsed.data)
  }

  /** {@link inForce} without the `iat`. */
  async activeAgents(ids: readonly string[]): Promise<AgentState[]> {
    return (await this.inForce(ids, [])).states
  }

  /**
   * The agents (and their spawn ancestors) are known and none is quarantined, here or in
   * the store (one round trip). Returns their states, in order, and the `iat` for a token
   * of `subjects`: after every revocation of them or their ancestors (a token issued in the
   * second of a revocation would die with it), dated by the store's clock when it has one
   * (the clock that dates revocations), else by this process's.
   */
  async inForce(ids: readonly string[], subjects: readonly string[]): Promise<AgentsInForce> {
    const states: AgentState[] = []
    for (const id of ids) states.push(await this.resolveAgent(id))
    return this.#inForceOf(ids, states, subjects)
  }

  /**
   * {@link inForce} without a round trip when none is needed: every agent is in this
   * registry (no lineage lookup) and the store is the in-memory one, whose quarantine check
   * is synchronous, or there is no store lineage at all. The same checks in the same order,
   * so the same answer and the same error; `undefined` (nothing checked) when an agent is
   * not here, and a promise when the store must be asked.
   */
  inForceLocal(ids: readonly string[], subjects: readonly string[]): AgentsInForce | Promise<AgentsInForce> | undefined {
    const states: AgentState[] = []
    for (const id of ids) {
      const local = typeof id === 'string' ? this.registry.get(id) : undefined
      if (local === undefined) return undefined
      states.push(local)
    }
    return this.#inForceOf(ids, states, subjects)
  }

  #inForceOf(ids: readonly string[], states: AgentState[], subjects: readonly string[]): AgentsInForce | Promise<AgentsInForce> {
    // Agents without spawn ancestors (every manifest agent) need no set: a repeated id is
    // checked twice, which answers the same.
    let spawned = false
    for (const s of states) if (s.ancestors.length > 0) spawned = true
    let all: readonly string[] = ids
    if (spawned) {
      const set = new Set<string>()
      for (const s of states) {
        set.add(s.declaration.id)
        for (const a of s.ancestors) set.add(a)
      }
      all = [...set]
    }
    for (const id of all) this.activeAgent(id)
    // The subjects and their ancestors: the agents a verifier checks the token's iat against.
    let dated: ReadonlySet<string> | readonly string[] = subjects
    if (spawned) {
      const set = new Set<string>()
      for (const id of subjects) {
        set.add(id)
        for (const a of this.registry.get(id)?.ancestors ?? []) set.add(a)
      }
      dated = set
    }
    let issuedAt = nowSeconds()
    if (this.minIat.size > 0) for (const id of dated) issuedAt = Math.max(issuedAt, this.minIat.get(id) ?? 0)
    if (this.lineage === undefined) return { states, issuedAt }
    const list = all
    if (this.clock === undefined) {
      if (this.#memoryLineage !== undefined) {
        if (this.#memoryLineage.anyQuarantinedNow(list)) throw this.#revoked(ids)
        // Synchronous unless an idle time is due to be restarted in the store.
        if (this.#untouched(list, Date.now()) !== undefined) return this.touch(list).then(() => ({ states, issuedAt }))
        return { states, issuedAt }
      }
      return this.#unquarantined(this.lineage, ids, list, { states, issuedAt })
    }
    return this.#clocked(this.clock, ids, states, list, dated instanceof Set ? dated : new Set(dated))
  }

  async #unquarantined(
    lineage: LineageStore,
    ids: readonly string[],
    list: readonly string[],
    answer: AgentsInForce,
  ): Promise<AgentsInForce> {
    if (await lineage.anyQuarantined(list)) throw this.#revoked(ids)
    await this.touch(list)
    return answer
  }

  async #clocked(
    clock: StoreClock,
    ids: readonly string[],
    states: AgentState[],
    list: readonly string[],
    dated: ReadonlySet<string>,
  ): Promise<AgentsInForce> {
    // The levels trust changes set are read in the same round trip: a change approved on any
    // replica is in force here at once, not at the next sync.
    const st = await clock.trustStates(list)
    if (st.quarantined) throw this.#revoked(ids)
    await this.touch(list)
    let issuedAt = st.nowSeconds
    list.forEach((id, i) => {
      const at = st.revokedAt[i]
      if (dated.has(id) && at !== undefined && at < AGENT_QUARANTINED) issuedAt = Math.max(issuedAt, at + 1)
    })
    if (st.levels.every((l) => l === undefined)) return { states, issuedAt }
    const stored = new Map<string, TrustLevel>()
    list.forEach((id, i) => {
      const l = st.levels[i]
      if (l === undefined) return
      if (!isTrustLevel(l))
        throw new StoreUnavailable('a trust level in the store is invalid; the call was denied', { details: { rule: 'level' } })
      stored.set(id, l)
    })
    // An agent is at most its own stored level and at most every ancestor's: a lowering of a
    // parent clamps its descendants on every replica, whatever they have applied.
    const clamped = states.map((s) => {
      let level = s.level
      for (const id of [s.declaration.id, ...s.ancestors]) {
        const l = stored.get(id)
        if (l !== undefined) level = minLevel(level, l)
      }
      return level === s.level ? s : { ...s, level }
    })
    return { states: clamped, issuedAt }
  }

  /**
   * Idle retirement: the spawned agents among `ids` (an agent and its ancestors: a child at
   * work keeps its parents alive) that this authority has not touched for a quarter of the
   * idle time restart it in the store, or are found idle there and retired. At most one
   * store write per agent per quarter idle time per replica, so not one per mint.
   */
  /** The spawned agents among `ids` this authority has not touched for a quarter idle time (undefined: none). */
  #untouched(ids: readonly string[], now: number): AgentState[] | undefined {
    if (this.idleMs === 0) return undefined
    let due: AgentState[] | undefined
    for (const id of ids) {
      const a = this.registry.get(id)
      if (a !== undefined && a.ancestors.length > 0 && now - a.touchedAtMs >= this.idleMs / 4) (due ??= []).push(a)
    }
    return due
  }

  async touch(ids: readonly string[]): Promise<void> {
    if (this.lineage === undefined) return
    const now = Date.now()
    const due = this.#untouched(ids, now)
    if (due === undefined) return
    const retired = await this.lineage.idleAgents(
      due.map((a) => a.declaration.id),
      this.idleMs,
      'touch',
    )
    for (const a of due) a.touchedAtMs = now
    if (retired.length === 0) return
    this.forgetRetired(retired, 'idle')
    const hit = ids.find((id) => retired.includes(id)) as string
    throw new AgentRevoked(`agent "${hit}" was retired: it was idle longer than ${this.idleMs / 1000} s`, {
      details: { agentId: hit, rule: 'idle' },
    })
  }

  /** Forget agents the store retired, and audit each (the first of each lineage is the one retired). */
  forgetRetired(ids: readonly string[], reason: 'idle' | undefined, by?: string): void {
    let head: string | undefined
    for (const id of ids) {
      const a = this.registry.get(id)
      const isHead = head === undefined || !(a?.ancestors.includes(head) ?? true)
      if (isHead) head = id
      this.registry.remove(id)
      this.record(revoked({ kind: 'retired', agentId: id, ...(isHead ? {} : { of: head }), ...(reason ? { reason } : {}) }, by))
    }
  }

  #revoked(ids: readonly string[]): AgentRevoked {
    const id = ids[0] as string
    return new AgentRevoked(`agent "${id}" or one of its ancestors is revoked`, { details: { agentId: id } })
  }

  /** The `anc` claim for a token speaking for these agents (undefined when none has a parent). */
  ancestry(states: readonly AgentState[], inherited: readonly string[] = []): string[] | undefined {
    const out = new Set<string>(inherited)
    for (const s of states) for (const a of s.ancestors) out.add(a)
    if (out.size > MAX_ANCESTRY_CLAIM) throw new DelegationDepth('the agents of this token have too many ancestors')
    return out.size === 0 ? undefined : [...out]
  }

  /** Whether an audit log was configured: without one, decision points build no event. */
  get audited(): boolean {
    return this.#audit !== discardAudit
  }

  record(e: AuditEventInput): void {
    this.#audit.record(e)
  }

  /** Before a decision: a log set to deny while its trail cannot be written refuses the call. */
  admit(): void {
    this.#audit.admit?.()
  }

  /** Record an allowed decision; with a `durable` log, resolve only once its event is written. */
  commit(e: AuditEventInput): Promise<void> | undefined {
    if (this.#audit.durable === true && typeof this.#audit.commit === 'function') return this.#audit.commit(e)
    this.#audit.record(e)
    return undefined
  }

  /** Record a refusal and return it as a coded error (anything unexpected becomes `ERR_GENERIC`). */
  deny(e: unknown, base: AuditFields & { readonly action: AuditAction }): AgentTrustError {
    const err = toAgentTrustError(e)
    const { action, ...fields } = base
    // The capability comes from the request as given: only its strings, at most 32, reach the trail.
    const capability = Array.isArray(fields.capability) ? fields.capability.filter((s) => typeof s === 'string').slice(0, 32) : undefined
    this.record(refusedEvent(action, err.code, { ...fields, capability }))
    return err
  }
}

/** The audit context copied into every token; its values are bounded like the verifier bounds them. */
export function checkContext(ctx: AuditContext): AuditContext {
  if (typeof ctx !== 'object' || ctx === null)
    throw new TokenClaims('context {session_id, user_id, task_id} is required', { details: { claim: 'context' } })
  const { session_id, user_id, task_id } = ctx
  for (const v of [session_id, user_id, task_id]) {
    if (typeof v !== 'string' || v.length > MAX_CONTEXT_VALUE_LENGTH)
      throw new TokenClaims(`context values must be strings of at most ${MAX_CONTEXT_VALUE_LENGTH} chars`, {
        details: { claim: 'context' },
      })
    if (hasUnprintable(v))
      throw new TokenClaims('context values must be plain text: no control, bidi or invisible characters', {
        details: { claim: 'context' },
      })
  }
  return { session_id, user_id, task_id }
}
