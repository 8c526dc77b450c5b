/**
 * Trust changes need a human. A change is a request naming the agent, the new level and a
 * reason; it takes effect only after an approver (the application's callback, or an operator
 * through a shared {@link TrustChangeStore}) approves it. Approving applies the level and
 * revokes the agent's outstanding tokens in either direction, so nothing minted at the old
 * level survives. Nothing in the token path can change a level.
 */
import { randomUUID } from 'node:crypto'
import { TrustChangeDenied } from '../errors.js'
import { forEachBounded, STORE_WRITE_CONCURRENCY } from '../lib/bounded.js'
import { MAX_TOKEN_LIFETIME_SECONDS } from '../policy/limits.js'
import { isTrustLevel, levelRank, type TrustLevel } from '../policy/trust.js'
import type { AuthorityCore } from './core.js'
import { approvedInOrder, notStale } from './trust-changes.js'
import type { ApprovalDecision, TrustChangeApprover, TrustChangeRequest, TrustChangeStatus, TrustChangeStore } from './types.js'
import { hasUnprintable } from '../policy/printable.js'
import { trustChangeApplied, trustChangeDenied, trustChangeRequested } from '../audit/events.js'

export class TrustChangeWorkflow {
  readonly #core: AuthorityCore
  readonly #store: TrustChangeStore
  readonly #approver: TrustChangeApprover | undefined
  /** Requests as this authority last saw them. */
  readonly #requests = new Map<string, TrustChangeRequest>()
  /** Approved changes this instance has applied (its registry is in memory). */
  readonly #applied = new Set<string>()

  constructor(core: AuthorityCore, store: TrustChangeStore, approver: TrustChangeApprover | undefined) {
    this.#core = core
    this.#store = store
    this.#approver = approver
  }

  /**
   * Ask for a trust-level change. Nothing changes until a human approves: through the
   * configured approver callback, through {@link Authority.decideTrustChange}, or from another
   * process (`agent-trust trust approve`) through a shared {@link TrustChangeStore},
   * picked up by {@link Authority.syncTrustChanges}.
   */
  async request(r: { agentId: string; level: TrustLevel; reason: string; requestedBy: string }): Promise<TrustChangeRequest> {
    const requestedBy = String(r?.requestedBy).slice(0, 128)
    let req: TrustChangeRequest
    try {
      this.#core.admit()
      const agent = this.#core.knownAgent(r.agentId)
      if (!isTrustLevel(r.level)) throw new TrustChangeDenied('level must be L0-L3')
      if (typeof r.reason !== 'string' || r.reason.trim().length === 0) throw new TrustChangeDenied('a trust change needs a reason')
      // The reason and the requester are shown to the approving human: no character in them
      // may move the cursor, erase a line or reorder text on that screen.
      if (hasUnprintable(r.reason) || hasUnprintable(requestedBy))
        throw new TrustChangeDenied('the reason and requester must be plain text: no control, bidi or invisible characters', {
          details: { rule: 'unprintable' },
        })
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
      await this.#store.add(req)
    } catch (e) {
      throw this.#core.deny(e, {
        action: 'trust_change',
        origin: requestedBy,
        destination: typeof r?.agentId === 'string' ? r.agentId.slice(0, 255) : undefined,
        note: 'request refused',
      })
    }
    this.#requests.set(req.id, req)
    await this.#core.commit(trustChangeRequested(req, req.requestedBy))
    if (this.#approver !== undefined) {
      let decision: ApprovalDecision | undefined
      try {
        decision = await this.#approver(Object.freeze({ ...req }))
      } catch {
        decision = undefined // An approver that fails leaves the request pending: fail closed.
      }
      if (decision !== undefined) await this.decide(req.id, decision)
    }
    return { ...(this.#requests.get(req.id) as TrustChangeRequest) }
  }

  /** Requests as this authority last saw them (its own, and others' as of the last {@link Authority.syncTrustChanges}). */
  list(status?: TrustChangeStatus): TrustChangeRequest[] {
    return [...this.#requests.values()].filter((r) => status === undefined || r.status === status).map((r) => ({ ...r }))
  }

  /**
   * Record a human decision (exactly one decision per request wins, across processes).
   * Approving applies the level and revokes the agent's outstanding tokens. A request made
   * against a level the agent no longer has, or above a spawned agent's parent, is refused.
   */
  async decide(id: string, decision: ApprovalDecision): Promise<TrustChangeRequest> {
    let decided: TrustChangeRequest
    try {
      this.#core.admit()
      if (typeof decision?.approver !== 'string' || decision.approver.trim().length === 0)
        throw new TrustChangeDenied('a decision must name its approver')
      decided = await this.#store.decide(
        String(id),
        // Only a literal `true` approves: a truthy string from a webhook does not.
        {
          approved: decision.approved === true,
          decidedBy: decision.approver,
          note: typeof decision.note === 'string' ? decision.note : undefined,
          decidedAt: new Date().toISOString(),
        },
        (req, all) => {
          notStale((agentId) => this.#core.registry.get(agentId)?.declaration.trustLevel)(req, all)
          this.#checkParentCeiling(req.agentId, req.to)
        },
      )
    } catch (e) {
      throw this.#core.deny(e, {
        action: 'trust_change',
        origin: typeof decision?.approver === 'string' ? decision.approver.slice(0, 128) : undefined,
        note: `decision refused (${String(id).slice(0, 64)})`,
      })
    }
    this.#requests.set(decided.id, decided)
    if (decided.status === 'denied') {
      this.#core.record(trustChangeDenied(decided, decided.decidedBy))
      return { ...decided }
    }
    await this.#applyTrustChange(decided, { revoke: true, via: 'approved' })
    return { ...(this.#requests.get(decided.id) as TrustChangeRequest) }
  }

  /**
   * Pick up requests and decisions made elsewhere (the CLI, another replica) and apply the
   * approved changes this authority has not applied yet, in the order they were decided;
   * each revokes the agent's outstanding tokens. Call it on a timer (every few seconds):
   * a change decided in another process takes effect here at the next sync.
   * Returns the ids applied. Throws `ERR_STORE_UNAVAILABLE` when the store cannot be read.
   */
  async sync(): Promise<string[]> {
    const all = await this.#store.list()
    for (const r of all) {
      const seen = this.#requests.get(r.id)
      this.#requests.set(r.id, r)
      if (r.status === 'denied' && seen?.status !== 'denied') {
        // Decided elsewhere (the CLI): this authority's trail says it saw the refusal.
        this.#core.record(trustChangeDenied(r, r.decidedBy, { elsewhere: true }))
      }
    }
    const applied: string[] = []
    for (const r of approvedInOrder(all)) {
      if (this.#applied.has(r.id)) continue
      await this.#applyTrustChange(r, { revoke: true, via: 'synced' })
      applied.push(r.id)
    }
    return applied
  }

  /** At start: levels from changes approved before this process existed. */
  async load(): Promise<void> {
    const all = await this.#store.list()
    for (const r of all) this.#requests.set(r.id, r)
    const recentMs = (MAX_TOKEN_LIFETIME_SECONDS + this.#core.tolerance) * 1000
    for (const r of approvedInOrder(all)) {
      // Applied long ago: every token of the old level has expired. Recently or never
      // applied: revoke again, since a previous instance may have minted at the old level.
      const appliedMs = r.appliedAt === undefined ? Number.NaN : Date.parse(r.appliedAt)
      const revoke = !(Date.now() - appliedMs >= recentMs)
      await this.#applyTrustChange(r, { revoke, via: 'loaded' })
    }
  }

  #checkParentCeiling(agentId: string, level: TrustLevel): void {
    const parentId = this.#core.registry.get(agentId)?.declaration.parent
    if (parentId === undefined) return
    const p = this.#core.registry.get(parentId)
    if (p !== undefined && levelRank(level) > levelRank(p.level))
      throw new TrustChangeDenied("a spawned agent may not exceed its parent's level", { details: { agentId } })
  }

  async #applyTrustChange(r: TrustChangeRequest, o: { revoke: boolean; via: 'approved' | 'synced' | 'loaded' }): Promise<void> {
    const agent = this.#core.registry.get(r.agentId)
    const label = `${r.from}->${r.to} (${r.id})`
    try {
      // A spawned agent unknown to this replica has no level here to change.
      if (agent === undefined)
        throw new TrustChangeDenied(`agent "${r.agentId}" is not known to this authority`, { details: { agentId: r.agentId } })
      this.#checkParentCeiling(r.agentId, r.to)
    } catch (e) {
      this.#applied.add(r.id)
      this.#core.deny(e, { action: 'trust_change', origin: this.#core.id, destination: r.agentId, note: `not applied ${label}` })
      return
    }
    agent.level = r.to
    // A lowering clamps every descendant (manifest children and spawned ones) to at most
    // the new level, and revokes their tokens too: a child never keeps more than its parent.
    const clamped: string[] = []
    if (levelRank(r.to) < levelRank(r.from))
      for (const id of this.#core.registry.lineage(r.agentId).slice(1)) {
        const d = this.#core.registry.get(id)
        if (d !== undefined && levelRank(d.level) > levelRank(r.to)) {
          d.level = r.to
          clamped.push(id)
        }
      }
    if (o.revoke) {
      // Outstanding tokens carry the old level: revoke them; new ones get a later iat.
      // The level is set first so that nothing minted from here on carries the old one;
      // if the store fails, the change stays unapplied here and the next sync revokes again.
      // Revoked up to the store's clock (or this process's without one), never below the
      // previous minimum iat: a token minted after an earlier change in the same second dies
      // with this one, and the lowered agent's later tokens are dated after it.
      try {
        // A bounded number at a time: a lowering of a large lineage's root must not fill the
        // store's admission queue (refusing the change, and every verifier sharing it).
        await forEachBounded([r.agentId, ...clamped], STORE_WRITE_CONCURRENCY, (id) => this.#core.revokeIssuedSoFar(id))
      } catch (e) {
        throw this.#core.deny(e, {
          action: 'trust_change',
          origin: this.#core.id,
          destination: r.agentId,
          trustLevel: r.to,
          note: `revocation failed for ${label}`,
        })
      }
    }
    this.#applied.add(r.id)
    let current = r
    if (r.appliedAt === undefined) {
      current = { ...r, appliedAt: new Date().toISOString() }
      // Best effort: the marker only spares later instances a second revocation.
      await this.#store.markApplied(r.id, current.appliedAt as string).catch(() => undefined)
    }
    this.#requests.set(r.id, current)
    const by = o.via === 'approved' ? r.decidedBy : this.#core.id
    const applied = trustChangeApplied(r, by, { applied: o.via, tokensRevoked: o.revoke })
    // The answer to `decide` waits for a durable log; changes picked up by sync/load are recorded.
    if (o.via === 'approved') await this.#core.commit(applied)
    else this.#core.record(applied)
  }
}
