/**
 * Revocation. A token's jti is revoked (and with it every token delegated from it, through
 * `chain`); an agent is quarantined together with every agent it spawned: the authority mints
 * nothing for them again and every verifier sharing the store rejects every token of theirs,
 * issued before or after, by any authority. A spawned agent whose task is done is retired:
 * quarantined the same way, and forgotten, so that its parent's child slot is free again.
 */
import { RequestInvalid, SpawnDenied, TokenClaims } from '../errors.js'
import { forEachBounded, STORE_WRITE_CONCURRENCY } from '../lib/bounded.js'
import { nowSeconds } from '../lib/time.js'
import { isJti } from '../policy/claims.js'
import { MARKER_GRACE_SECONDS, MAX_TOKEN_LIFETIME_SECONDS } from '../policy/limits.js'
import { AGENT_QUARANTINED, type ReplayRevocationStore } from '../revocation/store.js'
import type { AuthorityCore } from './core.js'
import type { RetireRequest } from './types.js'
import { revoked } from '../audit/events.js'

/** Revoke one token by jti; its delegated descendants die with it. */
export async function revokeToken(core: AuthorityCore, jti: string, options: { by?: string } = {}): Promise<void> {
  if (!isJti(jti)) throw new TokenClaims("revokeToken takes the token's jti (a UUID v4), not the token", { details: { claim: 'jti' } })
  const forgetAtMs = (nowSeconds() + MAX_TOKEN_LIFETIME_SECONDS + MARKER_GRACE_SECONDS + 1) * 1000
  await core.store.revokeToken(jti, forgetAtMs)
  core.record(revoked({ kind: 'token', jti }, options.by))
}

/**
 * Quarantine an agent and every agent it spawned: none are minted here again, and every
 * token of theirs, issued before or after (by any authority sharing the store), is
 * rejected by every verifier sharing the store.
 */
export async function revokeAgent(core: AuthorityCore, agentId: string, options: { by?: string } = {}): Promise<string[]> {
  await core.resolveAgent(agentId)
  const ids = core.registry.lineage(agentId)
  for (const id of ids) {
    const a = core.registry.get(id)
    if (a !== undefined) a.revoked = true
  }
  await revokeAll(core.store, ids, AGENT_QUARANTINED)
  for (const id of ids)
    core.record(revoked(id === agentId ? { kind: 'agent', agentId } : { kind: 'descendant', agentId: id, of: agentId }, options.by))
  return ids
}

/**
 * Revoke every id at `at`: in the store's batches when it has them, else `revokeAgent` a
 * bounded number at a time. Rejects on the first refusal (what was written stays written;
 * a retry of the whole quarantine is safe: revocations only ever extend).
 */
async function revokeAll(store: ReplayRevocationStore, ids: readonly string[], at: number): Promise<void> {
  if (typeof store.revokeAgents === 'function') return store.revokeAgents(ids, at)
  await forEachBounded(ids, STORE_WRITE_CONCURRENCY, (id) => store.revokeAgent(id, at))
}

/**
 * Retire a spawned agent (and every agent it spawned) when its task is done, at the request
 * of its parent or another ancestor: every token of theirs is refused from now on by every
 * verifier sharing the store, their ids stay taken for a day, their records are deleted and
 * the parent's child slot is freed. Retiring only takes authority away, so a parent may retire
 * its children even while it is itself quarantined. A manifest agent is revoked, not retired.
 */
export async function retireAgent(core: AuthorityCore, r: RetireRequest): Promise<string[]> {
  try {
    if (typeof r?.parent !== 'string' || typeof r.agentId !== 'string')
      throw new RequestInvalid('retire needs { parent, agentId } (agent ids)', { details: { rule: 'request' } })
    const agent = await core.resolveAgent(r.agentId)
    if (agent.ancestors.length === 0)
      throw new RequestInvalid(`agent "${r.agentId}" is declared in the manifest: revoke it (revokeAgent) instead of retiring it`, {
        details: { agentId: r.agentId, rule: 'retire-manifest-agent' },
      })
    if (!agent.ancestors.includes(r.parent))
      throw new SpawnDenied(`agent "${r.parent}" may not retire "${r.agentId}": only its parent or an ancestor may`, {
        details: { agentId: r.agentId, rule: 'retire-ancestor' },
      })
    let ids: string[]
    if (core.lineage !== undefined) {
      // The store decides what exists: descendants spawned by any replica are retired with it.
      ids = await core.lineage.retireAgent(r.agentId)
    } else {
      ids = core.registry.lineage(r.agentId)
      await revokeAll(core.store, ids, AGENT_QUARANTINED)
    }
    // Known here but already gone from the store (retired by another replica): forget it too.
    if (ids.length === 0) for (const id of core.registry.lineage(r.agentId)) core.registry.remove(id)
    core.forgetRetired(ids, undefined, r.parent)
    return ids
  } catch (e) {
    throw core.deny(e, { action: 'revoke', origin: r?.parent, destination: r?.agentId })
  }
}
