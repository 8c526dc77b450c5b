/**
 * The authority (DESIGN sections 1, 6, 8): the only component that signs capability tokens.
 * It holds the signing keys and the manifest; an agent can only *ask* it, and it refuses
 * anything the manifest does not allow. Keep it out of any LLM-driven process.
 */
import { randomUUID } from 'node:crypto'
import type { AuditEventInput, AuditLog } from '../audit/types.js'
import { discardAudit } from '../audit/types.js'
import {
  AgentSchema,
  parseManifest,
  resolveTool,
  type AgentDeclaration,
  type ResolvedTool,
  type AgentDeclarationInput,
  type Manifest,
  type ManifestInput,
} from '../config/manifest.js'
import type { AgentTrustError } from '../errors.js'
import {
  AgentRevoked,
  AgentUnknown,
  DelegationDepth,
  ScopeDenied,
  ScopeEscalation,
  ScopeInvalid,
  SpawnDenied,
  SpawnEscalation,
  TokenBinding,
  TokenClaims,
  TokenLifetime,
  TrustChangeDenied,
  TrustLevelDenied,
} from '../errors.js'
import { KeySet, type JSONWebKeySet, type SigningKeyRecord } from '../keys/index.js'
import { createKeyManager, type KeyManager } from '../keys/rotation.js'
import { MemoryKeyStore } from '../keys/store.js'
import { nowSeconds } from '../lib/time.js'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import { AGENT_QUARANTINED, type ReplayRevocationStore } from '../revocation/store.js'
import { isExactScope, isSubset, MAX_SCOPES_PER_TOKEN, uncovered } from '../scopes/index.js'
import {
  agentsOf,
  isJti,
  MAX_DELEGATION_CHAIN,
  MAX_TOKEN_LIFETIME_SECONDS,
  type ActorClaim,
  type AuditContext,
  type CapabilityClaims,
} from '../tokens/claims.js'
import { signToken, signTokenOffloaded } from '../tokens/jws.js'
import {
  isTrustLevel,
  levelRank,
  mayHoldTokens,
  mayRedelegate,
  maySpawn,
  minLevel,
  permitsOperation,
  type Operation,
  type TokenTrustLevel,
  type TrustLevel,
} from '../trust/index.js'
import { VerificationCore, Verifier, toAgentTrustError, type PeerIdentity, type VerifierOptions } from '../verifier/index.js'
import { AgentRegistry, type AgentState } from './registry.js'
import { egressCovered } from './egress-subset.js'
import { approvedInOrder, MemoryTrustChangeStore, notStale, type TrustChangeStore } from './trust-changes.js'

export interface MintRequest {
  /** The calling agent. */
  readonly subject: string
  /** The target agent or tool server: becomes `aud`. */
  readonly audience: string
  /** Exact scopes the call needs (no wildcards), 1-32. */
  readonly scope: readonly string[]
  /** The operation the scopes are for: checked against the subject's level. */
  readonly operation: Operation
  /** Audit context, copied unchanged into every delegated token. */
  readonly context: AuditContext
  /** Lifetime in seconds; default from the manifest (60), at most 300. */
  readonly ttlSeconds?: number
  /** `delegation_depth`; default and maximum: the agent's `maxDelegationDepth`. */
  readonly delegationDepth?: number
  /** Bind the token to this certificate (RFC 8705 `x5t#S256`). */
  readonly certificateThumbprint?: string
}

export interface ToolMintRequest {
  readonly subject: string
  /** The tool server (an agent in the manifest). */
  readonly audience: string
  readonly tool: string
  /** The call's arguments: they fill the tool's scope template. */
  readonly args?: Readonly<Record<string, unknown>>
  readonly context: AuditContext
  readonly ttlSeconds?: number
  readonly certificateThumbprint?: string
}

export interface ExchangeRequest {
  /** The token the holder received (its `aud` must be the holder). */
  readonly token: string
  /** The agent re-delegating. */
  readonly holder: string
  /** The next audience. */
  readonly audience: string
  /** A subset of the token's scopes; default all of them. */
  readonly scope?: readonly string[]
  readonly ttlSeconds?: number
  readonly certificateThumbprint?: string
  /** The holder's mTLS identity when the exchange arrives over the network. */
  readonly peer?: PeerIdentity
}

export interface SpawnRequest {
  readonly parent: string
  readonly child: Omit<AgentDeclarationInput, 'parent'>
}

export type TrustChangeStatus = 'pending' | 'approved' | 'denied'

export interface TrustChangeRequest {
  readonly id: string
  readonly agentId: string
  readonly from: TrustLevel
  readonly to: TrustLevel
  readonly reason: string
  readonly requestedBy: string
  readonly createdAt: string
  status: TrustChangeStatus
  decidedBy?: string
  /** ISO 8601: when the decision was recorded. */
  decidedAt?: string
  /** ISO 8601: when an authority first applied the approved change. */
  appliedAt?: string
  note?: string
}

export interface ApprovalDecision {
  readonly approved: boolean
  /** Who decided (a person's identifier). */
  readonly approver: string
  readonly note?: string
}

/** The application's human-in-the-loop: a CLI prompt, a webhook, a chat button. */
export type TrustChangeApprover = (request: Readonly<TrustChangeRequest>) => Promise<ApprovalDecision | undefined>

/** What agents and adapters need from an authority, in-process or remote. */
export interface CapabilityIssuer {
  mint(request: MintRequest): Promise<string>
  mintForTool(request: ToolMintRequest): Promise<{ token: string; scope: string; operation: Operation }>
  exchange(request: ExchangeRequest): Promise<string>
  spawn(request: SpawnRequest): Promise<AgentDeclaration>
}

export interface AuthorityOptions {
  readonly manifest: Manifest | ManifestInput
  /** Signing keys: a ready KeySet, or persisted records / JWKs. Default: one generated key. */
  /**
   * Signing keys: a `KeySet` (e.g. from `createKeyManager`, which persists and rotates them)
   * or persisted records. Default: ephemeral in-memory keys rotated every
   * `authority.keyRotationHours` of the manifest (24 h); call `close()` to stop the timer.
   */
  readonly keys?: KeySet | readonly SigningKeyRecord[]
  /** Where revocations are written (shared with verifiers). Default: in-memory. */
  readonly store?: ReplayRevocationStore
  readonly audit?: AuditLog
  /** Human approval for trust changes. Without one, requests wait for `decideTrustChange`. */
  readonly approver?: TrustChangeApprover
  /**
   * Sign on agent-trust's dedicated crypto thread rather than the event loop: a thread hop
   * of latency per token, another core for ECDSA when many agents mint at once. Pays off
   * when the event loop is the bottleneck and a core is free (an HTTP server under load);
   * costs throughput when every core is already busy. Default false.
   */
  readonly cryptoOffload?: boolean
  /**
   * Where trust-change requests wait and decisions are kept. Default: in memory. Use a
   * {@link FileTrustChangeStore} (or another shared store) so that the operator CLI in
   * another process can list, approve and deny them; see {@link Authority.syncTrustChanges}.
   */
  readonly trustChanges?: TrustChangeStore
}

const DEFAULT_CONTEXT_MAX = 256

function checkContext(ctx: AuditContext): AuditContext {
  if (typeof ctx !== 'object' || ctx === null)
    throw new TokenClaims('context {session_id, user_id, task_id} is required', { details: { claim: 'context' } })
  const { session_id, user_id, task_id } = ctx
  for (const v of [session_id, user_id, task_id]) {
    if (typeof v !== 'string' || v.length > DEFAULT_CONTEXT_MAX)
      throw new TokenClaims('context values must be strings of at most 256 chars', { details: { claim: 'context' } })
  }
  return { session_id, user_id, task_id }
}

/**
 * @example
 * ```ts
 * const authority = await Authority.create({ manifest })
 * const token = await authority.mint({ subject: 'agent-summarizer-v2', audience: 'agent-database-reader',
 *   scope: ['db:read:documents:namespace:user-123'], operation: 'read', context })
 * ```
 */
export class Authority implements CapabilityIssuer {
  readonly id: string
  readonly manifest: Manifest
  readonly keys: KeySet
  readonly store: ReplayRevocationStore
  readonly registry: AgentRegistry
  readonly #core: VerificationCore
  readonly #audit: AuditLog
  readonly #ttl: number
  readonly #tolerance: number
  readonly #approver: TrustChangeApprover | undefined
  readonly #offload: boolean
  #keyManager: KeyManager | undefined
  readonly #trustChanges = new Map<string, TrustChangeRequest>()
  readonly #trustStore: TrustChangeStore
  /** Approved changes this instance has applied (its registry is in memory). */
  readonly #appliedChanges = new Set<string>()
  /** Per agent: the earliest `iat` it may be issued (after a trust change revoked its tokens). */
  readonly #minIat = new Map<string, number>()

  private constructor(manifest: Manifest, keys: KeySet, options: AuthorityOptions) {
    this.manifest = manifest
    this.id = manifest.authority.id
    this.keys = keys
    this.store = options.store ?? new MemoryReplayRevocationStore()
    this.registry = new AgentRegistry(manifest)
    this.#audit = options.audit ?? discardAudit
    this.#ttl = manifest.authority.tokenTtlSeconds
    this.#tolerance = manifest.authority.clockToleranceSeconds
    this.#approver = options.approver
    this.#offload = options.cryptoOffload ?? false
    this.#trustStore = options.trustChanges ?? new MemoryTrustChangeStore()
    this.#core = new VerificationCore({
      issuers: [{ issuer: this.id, jwks: () => this.keys.jwks() }],
      store: this.store,
      clockToleranceSeconds: this.#tolerance,
    })
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
    const authority = new Authority(manifest, keys, options)
    authority.#keyManager = manager
    if (options.trustChanges !== undefined) await authority.#loadTrustChanges()
    return authority
  }

  /** Stop background work (the key rotation timer of ephemeral keys). Idempotent. */
  close(): void {
    this.#keyManager?.stop()
  }

  /** The public keys verifiers trust. Same object until keys change. */
  jwks(): JSONWebKeySet {
    return this.keys.jwks()
  }

  /** A trusted-issuer entry for a verifier in this process. */
  trustedIssuer(): { issuer: string; jwks: () => JSONWebKeySet } {
    return { issuer: this.id, jwks: () => this.keys.jwks() }
  }

  /**
   * A verifier in this process that trusts this authority and shares its store, so it sees
   * revocations at once. Across processes, give verifiers the JWKS and a shared (Redis) store.
   */
  createVerifier(options: Omit<VerifierOptions, 'issuers' | 'store'> & { store?: ReplayRevocationStore }): Verifier {
    return new Verifier({
      ...options,
      issuers: [this.trustedIssuer()],
      store: options.store ?? this.store,
      clockToleranceSeconds: options.clockToleranceSeconds ?? this.#tolerance,
    })
  }

  agent(id: string): Readonly<{ declaration: AgentDeclaration; level: TrustLevel; revoked: boolean }> | undefined {
    const a = this.registry.get(id)
    return a === undefined ? undefined : { declaration: a.declaration, level: a.level, revoked: a.revoked }
  }

  // ---- minting -------------------------------------------------------------------------

  async mint(request: MintRequest): Promise<string> {
    try {
      const { token, claims } = await this.#mint(request)
      this.#record({
        action: 'mint',
        decision: 'allow',
        origin: request.subject,
        destination: request.audience,
        capability: claims.scope,
        jti: claims.jti,
        trustLevel: claims.trust_level,
        context: claims.context,
      })
      return token
    } catch (e) {
      throw this.#deny(e, { action: 'mint', origin: request?.subject, destination: request?.audience, capability: request?.scope })
    }
  }

  async mintForTool(request: ToolMintRequest): Promise<{ token: string; scope: string; operation: Operation }> {
    let scope: string | undefined
    try {
      const server = this.#knownAgent(request.audience)
      const tool = this.#resolveTool(server, request.tool)
      scope = tool.scope.fill(request.args)
      const { token, claims } = await this.#mint({ ...request, scope: [scope], operation: tool.operation })
      this.#record({
        action: 'mint',
        decision: 'allow',
        origin: request.subject,
        destination: request.audience,
        tool: request.tool,
        capability: claims.scope,
        jti: claims.jti,
        trustLevel: claims.trust_level,
        context: claims.context,
      })
      return { token, scope, operation: tool.operation }
    } catch (e) {
      throw this.#deny(e, {
        action: 'mint',
        origin: request?.subject,
        destination: request?.audience,
        tool: request?.tool,
        capability: scope === undefined ? undefined : [scope],
      })
    }
  }

  async #mint(r: MintRequest): Promise<{ token: string; claims: CapabilityClaims }> {
    const subject = this.#activeAgent(r.subject)
    if (!mayHoldTokens(subject.level))
      throw new TrustLevelDenied(`agent "${r.subject}" is ${subject.level} and may not receive tokens`, { details: { agentId: r.subject } })
    this.#activeAgent(r.audience)
    const scope = this.#checkScopes(r.scope)
    if (!permitsOperation(subject.level, r.operation)) {
      throw new TrustLevelDenied(`agent "${r.subject}" is ${subject.level} and may not perform "${r.operation}" operations`, {
        details: { agentId: r.subject, rule: r.operation },
      })
    }
    const missing = uncovered(scope, subject.declaration.grants)
    if (missing.length > 0)
      throw new ScopeDenied(`agent "${r.subject}" has no grant covering the requested scope`, {
        details: { agentId: r.subject, scope: missing[0] },
      })
    const max = subject.declaration.maxDelegationDepth
    const depth = r.delegationDepth ?? max
    if (!Number.isInteger(depth) || depth < 0 || depth > max)
      throw new DelegationDepth(`delegationDepth must be an integer from 0 to ${max} for "${r.subject}"`, {
        details: { agentId: r.subject },
      })
    const iat = Math.max(nowSeconds(), this.#minIat.get(r.subject) ?? 0)
    const claims: CapabilityClaims = {
      iss: this.id,
      sub: r.subject,
      aud: r.audience,
      iat,
      nbf: iat,
      exp: iat + this.#lifetime(r.ttlSeconds),
      jti: randomUUID(),
      scope,
      delegation_depth: depth,
      trust_level: subject.level as TokenTrustLevel,
      context: checkContext(r.context),
      ...(r.certificateThumbprint === undefined ? {} : { cnf: { 'x5t#S256': r.certificateThumbprint } }),
    }
    return { token: await this.#sign(claims), claims }
  }

  #sign(claims: CapabilityClaims): string | Promise<string> {
    const { kid, privateKey } = this.keys.active()
    return this.#offload ? signTokenOffloaded(claims, kid, privateKey) : signToken(claims, kid, privateKey)
  }

  #lifetime(ttl: number | undefined): number {
    const t = ttl ?? this.#ttl
    if (!Number.isInteger(t) || t < 1 || t > MAX_TOKEN_LIFETIME_SECONDS)
      throw new TokenLifetime('ttlSeconds must be an integer from 1 to 300')
    return t
  }

  #checkScopes(scope: readonly string[]): string[] {
    if (!Array.isArray(scope) || scope.length === 0 || scope.length > MAX_SCOPES_PER_TOKEN)
      throw new ScopeInvalid('a token needs 1-32 exact scopes')
    for (const s of scope)
      if (!isExactScope(s)) throw new ScopeInvalid('tokens carry exact scopes only: no wildcards, segments of [A-Za-z0-9._@/+-]')
    return [...new Set(scope)]
  }

  /** Tool declarations compiled once per server and tool name (templates are per call otherwise). */
  readonly #compiledTools = new WeakMap<AgentState, Map<string, ResolvedTool>>()

  #resolveTool(server: AgentState, name: string): ResolvedTool {
    let byName = this.#compiledTools.get(server)
    if (byName === undefined) this.#compiledTools.set(server, (byName = new Map()))
    let tool = byName.get(name)
    if (tool === undefined) {
      tool = resolveTool(server.declaration.id, name, server.tools.get(name))
      // Undeclared names come from callers: cap the cache so they cannot grow it without bound.
      if (server.tools.has(name) || byName.size < 1024) byName.set(name, tool)
    }
    return tool
  }

  #knownAgent(id: string): AgentState {
    const a = typeof id === 'string' ? this.registry.get(id) : undefined
    if (a === undefined)
      throw new AgentUnknown(`agent "${String(id).slice(0, 64)}" is not in the manifest`, { details: { agentId: String(id).slice(0, 64) } })
    return a
  }

  #activeAgent(id: string): AgentState {
    const a = this.#knownAgent(id)
    if (a.revoked) throw new AgentRevoked(`agent "${id}" is revoked`, { details: { agentId: id } })
    return a
  }

  // ---- delegation ----------------------------------------------------------------------

  async exchange(r: ExchangeRequest): Promise<string> {
    let parent: CapabilityClaims | undefined
    try {
      // Over the network the holder is the authenticated caller; the token was bound to the
      // agent that presented it *to* the holder, so step 4 does not apply here.
      if (r.peer !== undefined && r.peer.agentId !== r.holder)
        throw new TokenBinding('the exchanging holder is not the authenticated peer', { details: { agentId: r.peer.agentId } })
      const verified = await this.#core.verify(r.token, { audience: r.holder, consume: false, holderRedeems: true })
      parent = verified.claims
      const holder = this.#activeAgent(r.holder)
      if (!mayRedelegate(holder.level))
        throw new TrustLevelDenied(`agent "${r.holder}" is ${holder.level} and may not re-delegate`, { details: { agentId: r.holder } })
      if (parent.delegation_depth < 1)
        throw new DelegationDepth('this capability may not be re-delegated (delegation_depth is 0)', { details: { jti: parent.jti } })
      const chain = [...(parent.chain ?? []), parent.jti]
      if (chain.length > MAX_DELEGATION_CHAIN)
        throw new DelegationDepth('the delegation chain is too long', { details: { jti: parent.jti } })
      this.#activeAgent(r.audience)
      const scope = r.scope === undefined ? [...parent.scope] : this.#checkScopes(r.scope)
      const extra = scope.filter((s) => !parent!.scope.includes(s))
      if (extra.length > 0)
        throw new ScopeEscalation('the exchanged token may only carry scopes of the presented token', {
          details: { scope: extra[0], jti: parent.jti },
        })
      const now = Math.max(nowSeconds(), this.#minIat.get(r.holder) ?? 0)
      const exp = Math.min(now + this.#lifetime(r.ttlSeconds), parent.exp)
      if (exp <= now) throw new TokenLifetime('the presented token expires too soon to delegate', { details: { jti: parent.jti } })
      const act: ActorClaim = parent.act === undefined ? { sub: r.holder } : { sub: r.holder, act: parent.act }
      const claims: CapabilityClaims = {
        iss: this.id,
        sub: parent.sub,
        aud: r.audience,
        iat: now,
        nbf: now,
        exp,
        jti: randomUUID(),
        scope,
        delegation_depth: parent.delegation_depth - 1,
        trust_level: minLevel(holder.level, parent.trust_level) as TokenTrustLevel,
        context: parent.context,
        act,
        chain,
        ...(r.certificateThumbprint === undefined ? {} : { cnf: { 'x5t#S256': r.certificateThumbprint } }),
      }
      const token = await this.#sign(claims)
      this.#record({
        action: 'exchange',
        decision: 'allow',
        origin: r.holder,
        destination: r.audience,
        capability: scope,
        jti: claims.jti,
        trustLevel: claims.trust_level,
        context: claims.context,
        chain,
        actors: agentsOf(claims).slice(1).reverse(),
      })
      return token
    } catch (e) {
      throw this.#deny(e, {
        action: 'exchange',
        origin: r?.holder,
        destination: r?.audience,
        capability: r?.scope,
        jti: parent?.jti,
        context: parent?.context,
        chain: parent?.chain,
      })
    }
  }

  // ---- spawn ---------------------------------------------------------------------------

  /** Register a sub-agent of an L3 parent. The child never exceeds its parent. */
  async spawn(r: SpawnRequest): Promise<AgentDeclaration> {
    try {
      const parent = typeof r?.parent === 'string' ? this.registry.get(r.parent) : undefined
      if (parent === undefined)
        throw new SpawnDenied(`parent "${String(r?.parent).slice(0, 64)}" is not in the manifest`, {
          details: { agentId: String(r?.parent).slice(0, 64) },
        })
      if (parent.revoked) throw new SpawnDenied(`parent "${r.parent}" is revoked`, { details: { agentId: r.parent } })
      if (!maySpawn(parent.level))
        throw new SpawnDenied(`agent "${r.parent}" is ${parent.level}; only L3 agents may spawn`, { details: { agentId: r.parent } })
      // Levels are checked before the schema: "L4" or "root" is an escalation attempt, not a typo.
      const asked = (r.child as { trustLevel?: unknown } | undefined)?.trustLevel
      if (!isTrustLevel(asked) || levelRank(asked) > levelRank(parent.level)) {
        throw new SpawnEscalation(`a child of an ${parent.level} agent must have a level from L0 to ${parent.level}`, {
          details: { agentId: String(r.child?.id).slice(0, 64) },
        })
      }
      const parsed = AgentSchema.safeParse({ ...r.child, parent: r.parent })
      if (!parsed.success)
        throw new SpawnDenied(
          'the child declaration is invalid: ' + parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
        )
      const child = parsed.data
      if (this.registry.has(child.id)) throw new SpawnDenied(`agent id "${child.id}" is already taken`, { details: { agentId: child.id } })
      if (levelRank(child.trustLevel) > levelRank(parent.level)) {
        throw new SpawnEscalation(`a child of an ${parent.level} agent may not be ${child.trustLevel}`, { details: { agentId: child.id } })
      }
      const extra = uncovered(child.grants, parent.declaration.grants)
      if (extra.length > 0)
        throw new ScopeEscalation('the child asks for grants its parent does not hold', { details: { agentId: child.id, scope: extra[0] } })
      if (!isSubset(child.grants, parent.declaration.grants)) throw new ScopeEscalation()
      if (child.maxDelegationDepth >= parent.declaration.maxDelegationDepth && child.maxDelegationDepth > 0) {
        throw new DelegationDepth("a child's maxDelegationDepth must be below its parent's", { details: { agentId: child.id } })
      }
      for (const e of child.egress) {
        if (!egressCovered(parent.declaration.egress, e))
          throw new SpawnEscalation('the child declares an egress destination its parent does not have', {
            details: { agentId: child.id, rule: 'egress' },
          })
      }
      this.registry.add(child)
      this.#record({
        action: 'spawn',
        decision: 'allow',
        origin: r.parent,
        destination: child.id,
        capability: child.grants,
        trustLevel: child.trustLevel,
      })
      return child
    } catch (e) {
      throw this.#deny(e, { action: 'spawn', origin: r?.parent, destination: r?.child?.id, capability: r?.child?.grants })
    }
  }

  // ---- revocation ----------------------------------------------------------------------

  /** Revoke one token by jti; its delegated descendants die with it. */
  async revokeToken(jti: string, options: { by?: string } = {}): Promise<void> {
    if (!isJti(jti)) throw new TokenClaims("revokeToken takes the token's jti (a UUID v4), not the token", { details: { claim: 'jti' } })
    const forgetAtMs = (nowSeconds() + MAX_TOKEN_LIFETIME_SECONDS + this.#tolerance + 1) * 1000
    await this.store.revokeToken(jti, forgetAtMs)
    this.#record({ action: 'revoke', decision: 'allow', origin: options.by, jti, note: 'token' })
  }

  /**
   * Quarantine an agent and every agent it spawned: none are minted here again, and every
   * token of theirs, issued before or after (by any authority sharing the store), is
   * rejected by every verifier sharing the store.
   */
  async revokeAgent(agentId: string, options: { by?: string } = {}): Promise<string[]> {
    this.#knownAgent(agentId)
    const ids = this.registry.lineage(agentId)
    for (const id of ids) {
      const a = this.registry.get(id)
      if (a !== undefined) a.revoked = true
    }
    await Promise.all(ids.map((id) => this.store.revokeAgent(id, AGENT_QUARANTINED)))
    for (const id of ids)
      this.#record({
        action: 'revoke',
        decision: 'allow',
        origin: options.by,
        destination: id,
        note: id === agentId ? 'agent' : `descendant of ${agentId}`,
      })
    return ids
  }

  // ---- trust changes (human approval) --------------------------------------------------

  /**
   * Ask for a trust-level change. Nothing changes until a human approves: through the
   * configured approver callback, through {@link decideTrustChange}, or from another
   * process (`agent-trust trust approve`) through a shared {@link TrustChangeStore},
   * picked up by {@link syncTrustChanges}.
   */
  async requestTrustChange(r: { agentId: string; level: TrustLevel; reason: string; requestedBy: string }): Promise<TrustChangeRequest> {
    const requestedBy = String(r?.requestedBy).slice(0, 128)
    let req: TrustChangeRequest
    try {
      const agent = this.#knownAgent(r.agentId)
      if (!isTrustLevel(r.level)) throw new TrustChangeDenied('level must be L0-L3')
      if (typeof r.reason !== 'string' || r.reason.trim().length === 0) throw new TrustChangeDenied('a trust change needs a reason')
      if (r.level === agent.level)
        throw new TrustChangeDenied(`agent "${r.agentId}" is already ${r.level}`, { details: { agentId: r.agentId } })
      this.#checkParentCeiling(r.agentId, r.level)
      req = {
        id: randomUUID(),
        agentId: r.agentId,
        from: agent.level,
        to: r.level,
        reason: r.reason.slice(0, 500),
        requestedBy,
        createdAt: new Date().toISOString(),
        status: 'pending',
      }
      await this.#trustStore.add(req)
    } catch (e) {
      throw this.#deny(e, {
        action: 'trust_change',
        origin: requestedBy,
        destination: typeof r?.agentId === 'string' ? r.agentId.slice(0, 255) : undefined,
        note: 'request refused',
      })
    }
    this.#trustChanges.set(req.id, req)
    this.#record({
      action: 'trust_change',
      decision: 'allow',
      origin: req.requestedBy,
      destination: req.agentId,
      note: `requested ${req.from}->${req.to} (${req.id})`,
    })
    if (this.#approver !== undefined) {
      let decision: ApprovalDecision | undefined
      try {
        decision = await this.#approver(Object.freeze({ ...req }))
      } catch {
        decision = undefined // An approver that fails leaves the request pending: fail closed.
      }
      if (decision !== undefined) await this.decideTrustChange(req.id, decision)
    }
    return { ...(this.#trustChanges.get(req.id) as TrustChangeRequest) }
  }

  /** Requests as this authority last saw them (its own, and others' as of the last {@link syncTrustChanges}). */
  listTrustChanges(status?: TrustChangeStatus): TrustChangeRequest[] {
    return [...this.#trustChanges.values()].filter((r) => status === undefined || r.status === status).map((r) => ({ ...r }))
  }

  /**
   * Record a human decision (exactly one decision per request wins, across processes).
   * Approving applies the level and revokes the agent's outstanding tokens. A request made
   * against a level the agent no longer has, or above a spawned agent's parent, is refused.
   */
  async decideTrustChange(id: string, decision: ApprovalDecision): Promise<TrustChangeRequest> {
    let decided: TrustChangeRequest
    try {
      if (typeof decision?.approver !== 'string' || decision.approver.trim().length === 0)
        throw new TrustChangeDenied('a decision must name its approver')
      decided = await this.#trustStore.decide(
        String(id),
        // Only a literal `true` approves: a truthy string from a webhook does not.
        {
          approved: decision.approved === true,
          decidedBy: decision.approver,
          note: typeof decision.note === 'string' ? decision.note : undefined,
          decidedAt: new Date().toISOString(),
        },
        (req, all) => {
          notStale((agentId) => this.registry.get(agentId)?.declaration.trustLevel)(req, all)
          this.#checkParentCeiling(req.agentId, req.to)
        },
      )
    } catch (e) {
      throw this.#deny(e, {
        action: 'trust_change',
        origin: typeof decision?.approver === 'string' ? decision.approver.slice(0, 128) : undefined,
        note: `decision refused (${String(id).slice(0, 64)})`,
      })
    }
    this.#trustChanges.set(decided.id, decided)
    if (decided.status === 'denied') {
      this.#record({
        action: 'trust_change',
        decision: 'deny',
        code: 'ERR_TRUST_CHANGE_DENIED',
        origin: decided.decidedBy,
        destination: decided.agentId,
        note: `denied ${decided.from}->${decided.to} (${decided.id})`,
      })
      return { ...decided }
    }
    await this.#applyTrustChange(decided, { revoke: true, via: 'approved' })
    return { ...(this.#trustChanges.get(decided.id) as TrustChangeRequest) }
  }

  /**
   * Pick up requests and decisions made elsewhere (the CLI, another replica) and apply the
   * approved changes this authority has not applied yet, in the order they were decided;
   * each revokes the agent's outstanding tokens. Call it on a timer (every few seconds):
   * a change decided in another process takes effect here at the next sync.
   * Returns the ids applied. Throws `ERR_STORE_UNAVAILABLE` when the store cannot be read.
   */
  async syncTrustChanges(): Promise<string[]> {
    const all = await this.#trustStore.list()
    for (const r of all) {
      const seen = this.#trustChanges.get(r.id)
      this.#trustChanges.set(r.id, r)
      if (r.status === 'denied' && seen?.status !== 'denied') {
        // Decided elsewhere (the CLI): this authority's trail says it saw the refusal.
        this.#record({
          action: 'trust_change',
          decision: 'deny',
          code: 'ERR_TRUST_CHANGE_DENIED',
          origin: r.decidedBy,
          destination: r.agentId,
          note: `denied ${r.from}->${r.to} (${r.id}) (decided elsewhere)`,
        })
      }
    }
    const applied: string[] = []
    for (const r of approvedInOrder(all)) {
      if (this.#appliedChanges.has(r.id)) continue
      await this.#applyTrustChange(r, { revoke: true, via: 'synced' })
      applied.push(r.id)
    }
    return applied
  }

  /** At start: levels from changes approved before this process existed. */
  async #loadTrustChanges(): Promise<void> {
    const all = await this.#trustStore.list()
    for (const r of all) this.#trustChanges.set(r.id, r)
    const recentMs = (MAX_TOKEN_LIFETIME_SECONDS + this.#tolerance) * 1000
    for (const r of approvedInOrder(all)) {
      // Applied long ago: every token of the old level has expired. Recently or never
      // applied: revoke again, since a previous instance may have minted at the old level.
      const appliedMs = r.appliedAt === undefined ? Number.NaN : Date.parse(r.appliedAt)
      const revoke = !(Date.now() - appliedMs >= recentMs)
      await this.#applyTrustChange(r, { revoke, via: 'loaded' })
    }
  }

  #checkParentCeiling(agentId: string, level: TrustLevel): void {
    const parentId = this.registry.get(agentId)?.declaration.parent
    if (parentId === undefined) return
    const p = this.registry.get(parentId)
    if (p !== undefined && levelRank(level) > levelRank(p.level))
      throw new TrustChangeDenied("a spawned agent may not exceed its parent's level", { details: { agentId } })
  }

  async #applyTrustChange(r: TrustChangeRequest, o: { revoke: boolean; via: 'approved' | 'synced' | 'loaded' }): Promise<void> {
    const agent = this.registry.get(r.agentId)
    const label = `${r.from}->${r.to} (${r.id})`
    try {
      // A spawned agent unknown to this replica has no level here to change.
      if (agent === undefined)
        throw new TrustChangeDenied(`agent "${r.agentId}" is not known to this authority`, { details: { agentId: r.agentId } })
      this.#checkParentCeiling(r.agentId, r.to)
    } catch (e) {
      this.#appliedChanges.add(r.id)
      this.#deny(e, { action: 'trust_change', origin: this.id, destination: r.agentId, note: `not applied ${label}` })
      return
    }
    agent.level = r.to
    if (o.revoke) {
      // Outstanding tokens carry the old level: revoke them; new ones get a later iat.
      // The level is set first so that nothing minted from here on carries the old one;
      // if the store fails, the change stays unapplied here and the next sync revokes again.
      const at = nowSeconds()
      this.#minIat.set(r.agentId, Math.max(this.#minIat.get(r.agentId) ?? 0, at + 1))
      try {
        await this.store.revokeAgent(r.agentId, at)
      } catch (e) {
        throw this.#deny(e, {
          action: 'trust_change',
          origin: this.id,
          destination: r.agentId,
          trustLevel: r.to,
          note: `revocation failed for ${label}`,
        })
      }
    }
    this.#appliedChanges.add(r.id)
    let current = r
    if (r.appliedAt === undefined) {
      current = { ...r, appliedAt: new Date().toISOString() }
      // Best effort: the marker only spares later instances a second revocation.
      await this.#trustStore.markApplied(r.id, current.appliedAt as string).catch(() => undefined)
    }
    this.#trustChanges.set(r.id, current)
    const by = o.via === 'approved' ? r.decidedBy : this.id
    const what =
      o.via === 'approved'
        ? 'approved'
        : o.via === 'synced'
          ? `applied (approved by ${r.decidedBy ?? '?'})`
          : `restored (approved by ${r.decidedBy ?? '?'})`
    this.#record({
      action: 'trust_change',
      decision: 'allow',
      origin: by,
      destination: r.agentId,
      trustLevel: r.to,
      note: `${what} ${label}${o.revoke ? '; outstanding tokens revoked' : ''}`,
    })
  }

  // ---- audit ---------------------------------------------------------------------------

  #record(e: AuditEventInput): void {
    this.#audit.record(e)
  }

  #deny(e: unknown, base: Omit<AuditEventInput, 'decision'>): AgentTrustError {
    const err = toAgentTrustError(e)
    this.#record({
      ...base,
      decision: 'deny',
      code: err.code,
      capability: Array.isArray(base.capability) ? base.capability.filter((s) => typeof s === 'string').slice(0, 32) : undefined,
    })
    return err
  }
}

export { egressCovered }
export type { TrustLevel }
