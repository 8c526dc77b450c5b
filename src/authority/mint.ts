/**
 * Minting: the authority issues a token to a registered, non-quarantined agent of level
 * L1 or above, only for exact scopes its grants cover, and only for an operation its level
 * permits. `mintForTool` computes the scope from the callee's tool declaration and the
 * call's arguments, so the token carries exactly what the callee's guard will require.
 */
import { randomUUID } from 'node:crypto'
import { DelegationDepth, ScopeDenied, TrustLevelDenied, RequestInvalid } from '../errors.js'
import type { CapabilityClaims } from '../policy/claims.js'
import { uncovered } from '../policy/scopes.js'
import { mayHoldTokens, permitsOperation, type Operation, type TokenTrustLevel } from '../policy/trust.js'
import { checkContext, type AuthorityCore } from './core.js'
import type { AgentState } from './registry.js'
import type { MintRequest, ToolMintRequest } from './types.js'
import { tokenIssued } from '../audit/events.js'

export async function mint(core: AuthorityCore, request: MintRequest): Promise<string> {
  try {
    core.admit()
    const { token, claims } = await mintClaims(core, request)
    // No log, no event: the hot path builds none.
    if (core.audited) {
      const written = core.commit(tokenIssued('mint', { holder: request.subject, audience: request.audience, claims }))
      if (written !== undefined) await written
    }
    return token
  } catch (e) {
    throw core.deny(e, { action: 'mint', origin: request?.subject, destination: request?.audience, capability: request?.scope })
  }
}

export async function mintForTool(
  core: AuthorityCore,
  request: ToolMintRequest,
): Promise<{ token: string; scope: string; operation: Operation }> {
  let scope: string | undefined
  try {
    core.admit()
    const args: unknown = request.args
    if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args)))
      throw new RequestInvalid("args must be the tool call's arguments object (or left out)", { details: { rule: 'args' } })
    // A local agent needs no lookup (no await); any other is resolved as before.
    const server =
      (typeof request.audience === 'string' ? core.registry.get(request.audience) : undefined) ??
      (await core.resolveAgent(request.audience))
    const tool = server.catalog.resolve(request.tool)
    scope = tool.scope.fill(request.args)
    // Least delegation: a tool-call token is for the callee's own use (delegation_depth 0)
    // unless the call asks for more, within the subject's maxDelegationDepth.
    // The request's fields one by one rather than `{ ...request, scope }`: V8 builds an object
    // spread followed by more members on its slow path, a tenth of a signature per mint.
    const { token, claims } = await mintClaims(core, {
      subject: request.subject,
      audience: request.audience,
      scope: [scope],
      operation: tool.operation,
      context: request.context,
      ttlSeconds: request.ttlSeconds,
      delegationDepth: request.delegationDepth ?? 0,
      certificateThumbprint: request.certificateThumbprint,
    })
    if (core.audited) {
      const written = core.commit(tokenIssued('mint', { holder: request.subject, audience: request.audience, claims, tool: request.tool }))
      if (written !== undefined) await written
    }
    return { token, scope, operation: tool.operation }
  } catch (e) {
    throw core.deny(e, {
      action: 'mint',
      origin: request?.subject,
      destination: request?.audience,
      tool: request?.tool,
      capability: scope === undefined ? undefined : [scope],
    })
  }
}

async function mintClaims(core: AuthorityCore, r: MintRequest): Promise<{ token: string; claims: CapabilityClaims }> {
  // The subject, the audience and their spawn ancestors: known and not quarantined anywhere (one store round trip).
  const ids = [r.subject, r.audience]
  const pending = core.inForceLocal(ids, [r.subject]) ?? core.inForce(ids, [r.subject])
  const inForce = pending instanceof Promise ? await pending : pending
  const [subject] = inForce.states as [AgentState, AgentState]
  if (!mayHoldTokens(subject.level))
    throw new TrustLevelDenied(`agent "${r.subject}" is ${subject.level} and may not receive tokens`, { details: { agentId: r.subject } })
  const scope = core.checkScopes(r.scope)
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
  const iat = inForce.issuedAt
  const anc = core.ancestry([subject])
  const claims: CapabilityClaims = {
    iss: core.id,
    sub: r.subject,
    aud: r.audience,
    iat,
    nbf: iat,
    exp: iat + core.lifetime(r.ttlSeconds),
    jti: randomUUID(),
    scope,
    delegation_depth: depth,
    trust_level: subject.level as TokenTrustLevel,
    context: checkContext(r.context),
  }
  // Added after the literal (same member order as before) rather than spread into it: a
  // spread of a conditional object leaves V8 on its slow path for the literal.
  if (anc !== undefined) (claims as { anc?: readonly string[] }).anc = anc
  if (r.certificateThumbprint !== undefined) (claims as { cnf?: CapabilityClaims['cnf'] }).cnf = { 'x5t#S256': r.certificateThumbprint }
  const signed = core.sign(claims)
  return { token: typeof signed === 'string' ? signed : await signed, claims }
}
