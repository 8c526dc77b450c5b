/**
 * What the egress guard, the connector and the agent share: the agent's policy, its audit
 * log and its enforcement mode, built once from the options; and how a decision is audited.
 */
import type { AuditLog } from '../audit/types.js'
import { discardAudit } from '../audit/types.js'
import { egressDecided } from '../audit/events.js'
import { resolveMode, type EnforcementMode } from '../config/mode.js'
import { ConfigInvalid } from '../errors.js'
import type { TrustLevel } from '../policy/trust.js'
import { agentTargetOrigins, type AgentCapabilityOptions } from './agent-call.js'
import { EgressPolicy, type EgressDecision } from './policy.js'

export interface EgressGuardOptions {
  /** The agent whose HTTP this is: named in audit events and errors. */
  readonly agentId: string
  /** Its level: L0 no egress, L1 GET/HEAD only, L2/L3 any method. A function is read per request. */
  readonly trustLevel: TrustLevel | (() => TrustLevel)
  /** Its declared destinations (the manifest's `egress`). Empty denies everything. */
  readonly egress: readonly string[]
  /** Where every decision goes (action `egress`). Default: discarded. */
  readonly audit?: AuditLog
  /** `enforce` (default, or `AGENT_TRUST`), `audit` (log, let through) or `off` (no checks, no events). */
  readonly mode?: EnforcementMode
}

/** What the guard, the connector and the agent share. */
export interface GuardContext {
  readonly agentId: string
  readonly policy: EgressPolicy
  readonly audit: AuditLog
  readonly mode: EnforcementMode
  /** Registered agent origins (with `capabilities`): a redirect may not cross into one. */
  readonly agentOrigins?: ReadonlySet<string>
}

export function contextOf(options: EgressGuardOptions & { capabilities?: AgentCapabilityOptions }): GuardContext {
  if (typeof options?.agentId !== 'string' || options.agentId.length === 0 || options.agentId.length > 255) {
    throw new ConfigInvalid('agentId is required (the agent whose egress this is)', { details: { rule: 'agentId' } })
  }
  return {
    agentId: options.agentId,
    policy: new EgressPolicy({ egress: options.egress, trustLevel: options.trustLevel }),
    audit: options.audit ?? discardAudit,
    mode: resolveMode(options.mode),
    ...(options.capabilities === undefined ? {} : { agentOrigins: agentTargetOrigins(options.capabilities.targets) }),
  }
}

/** Audit one decision (nothing is built when the log discards). */
export function recordDecision(ctx: GuardContext, d: EgressDecision, stage: 'request' | 'connect' | 'url', method?: unknown): void {
  if (ctx.audit === discardAudit) return
  ctx.audit.record(
    egressDecided(d, { agentId: ctx.agentId, trustLevel: ctx.policy.trustLevel, enforced: ctx.mode === 'enforce', stage, method }),
  )
}
