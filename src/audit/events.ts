/**
 * The audit events of every decision point, built here and nowhere else, so that one kind
 * of decision always has one shape in the trail: an allowed event never carries a code, a
 * refusal always carries its stable code, and the free-text `note` of each kind is written
 * by one function. Decision points call a builder and hand the result to an
 * {@link AuditLog}; what the log does with it (sanitizing, chaining, sinks) is its concern.
 */
import type { AgentTrustErrorCode } from '../errors.js'
import type { CapabilityClaims } from '../policy/claims.js'
import type { TrustLevel } from '../policy/trust.js'
import type { AuditAction, AuditEventInput } from './types.js'

/** What any event may carry besides its action, decision and code. */
export type AuditFields = Omit<AuditEventInput, 'action' | 'decision' | 'code'>

/** A decision point allowed `action`. */
export function allowedEvent(action: AuditAction, fields: AuditFields = {}): AuditEventInput {
  return { action, decision: 'allow', ...fields }
}

/** A decision point refused `action`, with the stable code of the refusal. */
export function refusedEvent(action: AuditAction, code: AgentTrustErrorCode, fields: AuditFields = {}): AuditEventInput {
  return { action, decision: 'deny', code, ...fields }
}

/** The claims of an issued token that the trail keeps (identifiers only, never the token). */
type IssuedClaims = Pick<CapabilityClaims, 'scope' | 'jti' | 'trust_level' | 'context'>

/** The authority issued a token: minted (`mint`) or exchanged for a delegated one (`exchange`). */
export function tokenIssued(
  action: 'mint' | 'exchange',
  issued: {
    readonly holder: string
    readonly audience: string
    readonly claims: IssuedClaims
    readonly tool?: string
    /** A delegated token's ancestry: the jtis of the tokens it was exchanged from, and the actors, current first. */
    readonly chain?: readonly string[]
    readonly actors?: readonly string[]
  },
): AuditEventInput {
  const { claims } = issued
  return allowedEvent(action, {
    origin: issued.holder,
    destination: issued.audience,
    ...(issued.tool === undefined ? {} : { tool: issued.tool }),
    capability: claims.scope,
    jti: claims.jti,
    trustLevel: claims.trust_level,
    context: claims.context,
    ...(issued.chain === undefined ? {} : { chain: issued.chain }),
    ...(issued.actors === undefined ? {} : { actors: issued.actors }),
  })
}

/** The authority registered a spawned agent with these grants and this level. */
export function agentSpawned(
  parent: string,
  child: { readonly id: string; readonly grants: readonly string[]; readonly trustLevel: TrustLevel },
): AuditEventInput {
  return allowedEvent('spawn', { origin: parent, destination: child.id, capability: child.grants, trustLevel: child.trustLevel })
}

/** A trust-change request, as the trail names it. */
interface TrustChangeRef {
  readonly id: string
  readonly agentId: string
  readonly from: TrustLevel
  readonly to: TrustLevel
}

/** Where a trust-change event was decided: in the authority, or by the operator's CLI on the store directly. */
type Via = 'authority' | 'cli'

function suffix(via: Via | undefined): string {
  return via === 'cli' ? ' (cli)' : ''
}

/** A trust change was requested (by `by`, an agent or operator). */
export function trustChangeRequested(request: TrustChangeRef, by: string | undefined, via?: Via): AuditEventInput {
  return allowedEvent('trust_change', {
    origin: by,
    destination: request.agentId,
    note: `requested ${label(request)}${suffix(via)}`,
  })
}

function label(request: TrustChangeRef): string {
  return `${request.from}->${request.to} (${request.id})`
}

/**
 * A trust change was approved and applied: by this decision (`approved`), or picked up from
 * the store after another process decided it (`synced`) or at start (`loaded`).
 */
export function trustChangeApplied(
  request: TrustChangeRef & { readonly decidedBy?: string },
  by: string | undefined,
  how: { readonly applied: 'approved' | 'synced' | 'loaded'; readonly tokensRevoked: boolean; readonly via?: Via },
): AuditEventInput {
  const what =
    how.applied === 'approved'
      ? 'approved'
      : `${how.applied === 'synced' ? 'applied' : 'restored'} (approved by ${request.decidedBy ?? '?'})`
  return allowedEvent('trust_change', {
    origin: by,
    destination: request.agentId,
    trustLevel: request.to,
    note: `${what} ${label(request)}${how.tokensRevoked ? '; outstanding tokens revoked' : ''}${suffix(how.via)}`,
  })
}

/** A trust change was denied by an operator (`elsewhere`: learnt from the store, decided by another process). */
export function trustChangeDenied(
  request: TrustChangeRef,
  by: string | undefined,
  options: { elsewhere?: boolean; via?: Via } = {},
): AuditEventInput {
  return refusedEvent('trust_change', 'ERR_TRUST_CHANGE_DENIED', {
    origin: by,
    destination: request.agentId,
    note: `denied ${label(request)}${options.elsewhere === true ? ' (decided elsewhere)' : ''}${suffix(options.via)}`,
  })
}

/** A trust-change request or decision was refused before anything was stored (`what`: a short, fixed description). */
export function trustChangeRefused(agentId: string | undefined, by: string | undefined, what: string, via?: Via): AuditEventInput {
  return refusedEvent('trust_change', 'ERR_TRUST_CHANGE_DENIED', { origin: by, destination: agentId, note: `${what}${suffix(via)}` })
}

/** A revocation was made: one token, an agent (quarantine), a descendant of a quarantined agent, a certificate, or every certificate of an identity. */
export type RevocationTarget =
  | { readonly kind: 'token'; readonly jti: string }
  | { readonly kind: 'agent'; readonly agentId: string }
  | { readonly kind: 'descendant'; readonly agentId: string; readonly of: string }
  | { readonly kind: 'retired'; readonly agentId: string; readonly of?: string; readonly reason?: 'idle' }
  | { readonly kind: 'certificate'; readonly serialNumber: string }
  | { readonly kind: 'identity'; readonly workload: 'agent' | 'operator'; readonly id: string }

export function revoked(target: RevocationTarget, by: string | undefined, via?: Via): AuditEventInput {
  switch (target.kind) {
    case 'token':
      return allowedEvent('revoke', { origin: by, jti: target.jti, note: `token${suffix(via)}` })
    case 'agent':
      return allowedEvent('revoke', { origin: by, destination: target.agentId, note: `agent${suffix(via)}` })
    case 'descendant':
      return allowedEvent('revoke', { origin: by, destination: target.agentId, note: `descendant of ${target.of}${suffix(via)}` })
    case 'retired':
      return allowedEvent('revoke', {
        origin: by,
        destination: target.agentId,
        note: `${target.reason === 'idle' ? 'retired idle' : 'retired'}${target.of === undefined ? '' : ` with ${target.of}`}${suffix(via)}`,
      })
    case 'certificate':
      return allowedEvent('revoke', { origin: by, note: `certificate ${target.serialNumber.toLowerCase().slice(0, 40)}${suffix(via)}` })
    case 'identity':
      return allowedEvent('revoke', { origin: by, destination: target.id, note: `${target.workload} certificates${suffix(via)}` })
  }
}

/** A peer was refused before any request was processed: at the TLS handshake, on the connection, or on the request. */
export function peerRefused(
  action: 'agent_call' | 'tool_call',
  code: AgentTrustErrorCode,
  refusal: {
    readonly destination: string
    readonly stage: string
    readonly reason?: unknown
    readonly enforced?: boolean
    readonly origin?: string
  },
): AuditEventInput {
  const reason = typeof refusal.reason === 'string' && refusal.reason !== '' ? `: ${refusal.reason.slice(0, 64)}` : ''
  return refusedEvent(action, code, {
    ...(refusal.origin === undefined ? {} : { origin: refusal.origin }),
    destination: refusal.destination,
    ...(refusal.enforced === undefined ? {} : { enforced: refusal.enforced }),
    note: `${refusal.stage} refused${reason}`,
  })
}

/** An egress policy's verdict, as the in-process guard and the sandbox proxy both report it. */
export interface EgressVerdict {
  readonly allowed: boolean
  readonly rule?: string
  readonly addressClass?: string
  readonly origin?: string
  readonly host?: string
}

const METHOD_FOR_NOTE = /^[A-Z]{1,16}$/

/** An outbound request (or connection) was decided: `via` the in-process guard or the sandbox's proxy. */
export function egressDecided(
  verdict: EgressVerdict,
  at: {
    readonly agentId: string
    readonly trustLevel: TrustLevel
    readonly enforced: boolean
    readonly stage: string
    readonly method?: unknown
    readonly via?: 'guard' | 'proxy'
  },
): AuditEventInput {
  const method = typeof at.method === 'string' && METHOD_FOR_NOTE.test(at.method) ? ` ${at.method}` : ''
  const why = verdict.allowed ? '' : ` rule=${verdict.rule}${verdict.addressClass === undefined ? '' : ` class=${verdict.addressClass}`}`
  const destination = verdict.origin ?? verdict.host
  const fields: AuditFields = {
    origin: at.agentId,
    ...(destination ? { destination } : {}),
    trustLevel: at.trustLevel,
    enforced: at.enforced,
    note: `${at.via === 'proxy' ? 'proxy ' : ''}${at.stage}${method}${why}`,
  }
  return verdict.allowed ? allowedEvent('egress', fields) : refusedEvent('egress', 'ERR_EGRESS_DENIED', fields)
}

/** A sandbox's network was set up (`start`, with what it allows) or torn down (`stop`). */
export function sandboxLifecycle(
  agent: { readonly id: string; readonly trustLevel: TrustLevel },
  stage: 'start' | 'stop',
  detail: string,
): AuditEventInput {
  return allowedEvent('egress', { origin: agent.id, trustLevel: agent.trustLevel, note: `sandbox ${stage} ${detail}` })
}
