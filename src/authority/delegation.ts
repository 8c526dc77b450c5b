/**
 * Delegation. `exchange` is on-behalf-of token exchange (RFC 8693): the holder of a token
 * it is the audience of asks for a token to a next audience, with a subset of the scopes,
 * one less `delegation_depth`, no later `exp`, the same `context`, itself as the current
 * actor (`act`) and the presented token's jti appended to `chain`. `spawn` registers a
 * sub-agent of an L3 parent that never exceeds the parent: level, grants, delegation depth
 * and egress destinations are all within the parent's.
 */
import { randomUUID } from 'node:crypto'
import { AgentSchema, type AgentDeclaration } from '../config/manifest.js'
import {
  DelegationDepth,
  ScopeEscalation,
  SpawnDenied,
  SpawnEscalation,
  StoreUnavailable,
  TokenBinding,
  TokenLifetime,
  TokenReplayed,
  TrustLevelDenied,
  RequestInvalid,
  ConfigInvalid,
} from '../errors.js'
import { agentsOf, type ActorClaim, type CapabilityClaims } from '../policy/claims.js'
import { egressCovered } from '../policy/destination.js'
import { MAX_DELEGATION_CHAIN, MAX_SPAWN_DEPTH } from '../policy/limits.js'
import { isSubset, uncovered } from '../policy/scopes.js'
import { isTrustLevel, levelRank, mayRedelegate, maySpawn, minLevel, type TokenTrustLevel } from '../policy/trust.js'
import type { AuthorityCore } from './core.js'
import type { AgentState } from './registry.js'
import type { ExchangeRequest, SpawnRequest } from './types.js'
import { agentSpawned, tokenIssued } from '../audit/events.js'

export async function exchange(core: AuthorityCore, r: ExchangeRequest): Promise<string> {
  let parent: CapabilityClaims | undefined
  try {
    core.admit()
    // Over the network the holder is the authenticated caller; the token was bound to the
    // agent that presented it *to* the holder, so step 4 does not apply here.
    if (r.peer !== undefined && r.peer.agentId !== r.holder)
      throw new TokenBinding('the exchanging holder is not the authenticated peer', { details: { agentId: r.peer.agentId } })
    const verified = await core.verification.verify(r.token, { audience: r.holder, consume: false, holderRedeems: true })
    parent = verified.claims
    const inForce = await core.inForce([r.holder, r.audience, ...agentsOf(parent)], [r.holder, ...agentsOf(parent)])
    const [holder] = inForce.states as [AgentState]
    if (!mayRedelegate(holder.level))
      throw new TrustLevelDenied(`agent "${r.holder}" is ${holder.level} and may not re-delegate`, { details: { agentId: r.holder } })
    if (parent.delegation_depth < 1)
      throw new DelegationDepth('this capability may not be re-delegated (delegation_depth is 0)', { details: { jti: parent.jti } })
    const chain = [...(parent.chain ?? []), parent.jti]
    if (chain.length > MAX_DELEGATION_CHAIN) throw new DelegationDepth('the delegation chain is too long', { details: { jti: parent.jti } })
    const scope = r.scope === undefined ? [...parent.scope] : core.checkScopes(r.scope)
    const extra = scope.filter((s) => !parent!.scope.includes(s))
    if (extra.length > 0)
      throw new ScopeEscalation('the exchanged token may only carry scopes of the presented token', {
        details: { scope: extra[0], jti: parent.jti },
      })
    const now = inForce.issuedAt
    const exp = Math.min(now + core.lifetime(r.ttlSeconds), parent.exp)
    if (exp <= now) throw new TokenLifetime('the presented token expires too soon to delegate', { details: { jti: parent.jti } })
    // Last check before signing (a refused exchange spends nothing). One exchange per presented token: the exchange consumes a marker of its own, in the shared
    // store, so a second exchange of the same token (in any process) is a replay, while the
    // holder's own verifier may still consume the token's jti for the call it was sent for.
    const once = await core.store.check({
      jti: `exchange:${parent.jti}`,
      chain: [],
      agents: [],
      iat: parent.iat,
      forgetAtMs: (parent.exp + 61) * 1000,
      consume: true,
    })
    if (once === 'replayed')
      throw new TokenReplayed('this token was already exchanged (one exchange per presented token)', {
        details: { jti: parent.jti, rule: 'exchange-once' },
      })
    if (once !== 'ok') throw new StoreUnavailable('the replay/revocation store gave no valid answer', { details: { jti: parent.jti } })
    const anc = core.ancestry([holder], parent.anc)
    const act: ActorClaim = parent.act === undefined ? { sub: r.holder } : { sub: r.holder, act: parent.act }
    const claims: CapabilityClaims = {
      iss: core.id,
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
      ...(anc === undefined ? {} : { anc }),
      ...(r.certificateThumbprint === undefined ? {} : { cnf: { 'x5t#S256': r.certificateThumbprint } }),
    }
    const token = await core.sign(claims)
    await core.commit(
      tokenIssued('exchange', { holder: r.holder, audience: r.audience, claims, chain, actors: agentsOf(claims).slice(1).reverse() }),
    )
    return token
  } catch (e) {
    throw core.deny(e, {
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
export async function spawn(core: AuthorityCore, r: SpawnRequest): Promise<AgentDeclaration> {
  try {
    core.admit()
    const parent = typeof r?.parent === 'string' ? await core.resolveAgent(r.parent).catch(() => undefined) : undefined
    if (parent === undefined)
      throw new SpawnDenied(`parent "${String(r?.parent).slice(0, 64)}" is not in the manifest`, {
        details: { agentId: String(r?.parent).slice(0, 64) },
      })
    const lineage = [r.parent, ...parent.ancestors]
    if (parent.revoked || lineage.some((a) => core.registry.get(a)?.revoked === true))
      throw new SpawnDenied(`parent "${r.parent}" is revoked`, { details: { agentId: r.parent } })
    if (parent.ancestors.length >= MAX_SPAWN_DEPTH)
      throw new SpawnDenied(`agents may be spawned at most ${MAX_SPAWN_DEPTH} generations deep`, { details: { agentId: r.parent } })
    // The parent's level as the store has it now (a lowering on another replica counts at once).
    const live = (
      await core.activeAgents([r.parent]).catch((e: unknown) => {
        if ((e as { code?: string }).code === 'ERR_AGENT_REVOKED')
          throw new SpawnDenied(`parent "${r.parent}" is revoked`, { details: { agentId: r.parent } })
        throw e
      })
    )[0] as AgentState
    if (!maySpawn(live.level))
      throw new SpawnDenied(`agent "${r.parent}" is ${live.level}; only L3 agents may spawn`, { details: { agentId: r.parent } })
    // A key the declaration does not have is a typo ("trustlevel") to name, not an escalation.
    if (typeof r.child !== 'object' || r.child === null || Array.isArray(r.child))
      throw new RequestInvalid('spawn needs a child declaration object { id, trustLevel, grants, ... }', { details: { rule: 'child' } })
    const unknown = Object.keys(r.child).find((k) => !Object.hasOwn(AgentSchema.shape, k) || k === 'parent')
    if (unknown !== undefined)
      throw new ConfigInvalid(`the child declaration has an unknown key "${unknown.slice(0, 64)}"${hintFor(unknown)}`, {
        details: { rule: 'unknown-key', agentId: String(r.child.id).slice(0, 64) },
      })
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
    if (core.registry.has(child.id)) throw new SpawnDenied(`agent id "${child.id}" is already taken`, { details: { agentId: child.id } })
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
    if (core.lineage !== undefined) {
      // One atomic step in the store: the id is free everywhere, no ancestor is quarantined,
      // the parent is under its cap. Only then is the child known here.
      const { verdict, retired } = await core.lineage.registerAgent(
        { id: child.id, ancestors: lineage, declaration: child },
        core.maxChildren,
        core.idleMs,
      )
      // The parent's idle children retired to make room.
      core.forgetRetired(retired, 'idle')
      if (verdict === 'exists') throw new SpawnDenied(`agent id "${child.id}" is already taken`, { details: { agentId: child.id } })
      if (verdict === 'quarantined') throw new SpawnDenied(`parent "${r.parent}" is revoked`, { details: { agentId: r.parent } })
      if (verdict === 'too-many-children')
        throw new SpawnDenied(`parent "${r.parent}" already has ${core.maxChildren} children`, {
          details: { agentId: r.parent, rule: 'maxChildrenPerParent' },
        })
    } else if (parent.children.size >= core.maxChildren) {
      throw new SpawnDenied(`parent "${r.parent}" already has ${core.maxChildren} children`, {
        details: { agentId: r.parent, rule: 'maxChildrenPerParent' },
      })
    }
    core.registry.add(child).touchedAtMs = Date.now()
    // Durable: answered once the event is written. If that fails the call is refused, but the
    // child stays registered (the store already holds it): the trail's allow event names it.
    await core.commit(agentSpawned(r.parent, child))
    return child
  } catch (e) {
    throw core.deny(e, { action: 'spawn', origin: r?.parent, destination: r?.child?.id, capability: r?.child?.grants })
  }
}

/** "did you mean" for a key that differs from a declaration key only in case. */
function hintFor(key: string): string {
  const match = Object.keys(AgentSchema.shape).find((k) => k.toLowerCase() === key.toLowerCase())
  return match === undefined ? '' : ` (did you mean "${match}"?)`
}
