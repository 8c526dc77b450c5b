/**
 * The capability token's claims and their strict validation.
 */
import { TokenClaims } from '../errors.js'
import { isExactScope } from './scopes.js'
import type { TokenTrustLevel } from './trust.js'
import { MAX_AGENT_ID_LENGTH, MAX_ANCESTRY_CLAIM, MAX_CONTEXT_VALUE_LENGTH, MAX_DELEGATION_CHAIN, MAX_SCOPES_PER_TOKEN } from './limits.js'
import { hasUnprintable } from './printable.js'

export const TOKEN_TYPE = 'agent-cap+jwt'
export const TOKEN_ALG = 'ES256'

export interface AuditContext {
  readonly session_id: string
  readonly user_id: string
  readonly task_id: string
}

/** RFC 8693 actor claim: outermost is the current actor. */
export interface ActorClaim {
  readonly sub: string
  readonly act?: ActorClaim
}

export interface CapabilityClaims {
  readonly iss: string
  readonly sub: string
  readonly aud: string
  readonly iat: number
  readonly nbf: number
  readonly exp: number
  readonly jti: string
  readonly scope: readonly string[]
  readonly delegation_depth: number
  readonly trust_level: TokenTrustLevel
  readonly context: AuditContext
  readonly act?: ActorClaim
  readonly chain?: readonly string[]
  /**
   * Ancestry: the spawn ancestors (parents, grandparents...) of the agents the token speaks
   * for. The store's check treats them like the token's agents, so quarantining an ancestor
   * refuses the token with no further lookup.
   */
  readonly anc?: readonly string[]
  readonly cnf?: { readonly 'x5t#S256': string }
}

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,254}$/
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/

export function isAgentId(v: unknown): v is string {
  return typeof v === 'string' && AGENT_ID.test(v)
}

export function isJti(v: unknown): v is string {
  return typeof v === 'string' && UUID_V4.test(v)
}

const ALLOWED_CLAIMS = new Set([
  'iss',
  'sub',
  'aud',
  'iat',
  'nbf',
  'exp',
  'jti',
  'scope',
  'delegation_depth',
  'trust_level',
  'context',
  'act',
  'chain',
  'anc',
  'cnf',
])

function fail(claim: string, reason: string): never {
  throw new TokenClaims(`claim "${claim}" ${reason}`, { details: { claim } })
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function validateActor(v: unknown, depth: number): void {
  if (depth > MAX_DELEGATION_CHAIN) fail('act', 'is nested too deeply')
  if (!isPlainObject(v)) fail('act', 'must be an object')
  for (const k in v) if (k !== 'sub' && k !== 'act') fail('act', 'has an unknown member')
  if (!isAgentId(v.sub)) fail('act', 'must have an agent id in "sub"')
  if (v.act !== undefined) validateActor(v.act, depth + 1)
}

/**
 * Checks presence, types and grammar of every claim; throws `ERR_TOKEN_CLAIMS` naming the
 * first bad claim. Unknown claims are rejected: only the authority mints, so anything
 * else is a forgery attempt or a version mismatch.
 */
export function assertCapabilityClaims(payload: unknown): asserts payload is CapabilityClaims {
  if (!isPlainObject(payload)) fail('payload', 'must be a JSON object')
  for (const k in payload) if (!ALLOWED_CLAIMS.has(k)) fail(k.slice(0, 32), 'is not allowed') // an attacker's name: bounded
  if (typeof payload.iss !== 'string' || payload.iss.length === 0 || payload.iss.length > MAX_AGENT_ID_LENGTH)
    fail('iss', 'must be a non-empty string')
  if (!isAgentId(payload.sub)) fail('sub', 'must be an agent id')
  if (typeof payload.aud !== 'string' || payload.aud.length === 0 || payload.aud.length > MAX_AGENT_ID_LENGTH)
    fail('aud', 'must be one string')
  if (!isTime(payload.iat)) fail('iat', 'must be an integer NumericDate')
  if (!isTime(payload.nbf)) fail('nbf', 'must be an integer NumericDate')
  if (!isTime(payload.exp)) fail('exp', 'must be an integer NumericDate')
  if (!isJti(payload.jti)) fail('jti', 'must be a UUID v4')
  const scope = payload.scope
  if (!Array.isArray(scope) || scope.length === 0 || scope.length > MAX_SCOPES_PER_TOKEN)
    fail('scope', 'must be a non-empty array of at most 32 scopes')
  for (const s of scope) if (!isExactScope(s)) fail('scope', 'holds a scope that is not well-formed and exact')
  const dd = payload.delegation_depth
  if (typeof dd !== 'number' || !Number.isSafeInteger(dd) || dd < 0 || dd > MAX_DELEGATION_CHAIN)
    fail('delegation_depth', 'must be an integer from 0 to 8')
  const tl = payload.trust_level
  if (tl !== 'L1' && tl !== 'L2' && tl !== 'L3') fail('trust_level', 'must be "L1", "L2" or "L3"')
  const ctx = payload.context
  if (!isPlainObject(ctx)) fail('context', 'must be an object')
  for (const k in ctx) if (k !== 'session_id' && k !== 'user_id' && k !== 'task_id') fail('context', 'has an unknown member')
  for (const k of ['session_id', 'user_id', 'task_id'] as const) {
    const v = ctx[k]
    if (typeof v !== 'string' || v.length > MAX_CONTEXT_VALUE_LENGTH) fail('context', `must have a string "${k}"`)
    // Context values reach audit trails and operators' screens: plain text only.
    if (hasUnprintable(v)) fail('context', `"${k}" must be plain text (no control, bidi or invisible characters)`)
  }
  if (payload.act !== undefined) validateActor(payload.act, 1)
  if (payload.chain !== undefined) {
    const chain = payload.chain
    if (!Array.isArray(chain) || chain.length === 0 || chain.length > MAX_DELEGATION_CHAIN)
      fail('chain', 'must be a non-empty array of at most 8 jtis')
    for (const j of chain) if (!isJti(j)) fail('chain', 'must hold UUID v4 jtis')
  }
  if (payload.anc !== undefined) {
    const anc = payload.anc
    if (!Array.isArray(anc) || anc.length === 0 || anc.length > MAX_ANCESTRY_CLAIM)
      fail('anc', `must be a non-empty array of at most ${MAX_ANCESTRY_CLAIM} agent ids`)
    for (const a of anc) if (!isAgentId(a)) fail('anc', 'must hold agent ids')
  }
  if (payload.cnf !== undefined) {
    const cnf = payload.cnf
    if (!isPlainObject(cnf)) fail('cnf', 'must be an object')
    for (const k in cnf) if (k !== 'x5t#S256') fail('cnf', 'has an unknown member')
    if (typeof cnf['x5t#S256'] !== 'string' || !THUMBPRINT.test(cnf['x5t#S256'])) fail('cnf', 'must hold a base64url SHA-256 thumbprint')
  }
}

/** The agent presenting the token: the current actor of a delegated token, else `sub`. */
export function presenterOf(claims: Pick<CapabilityClaims, 'sub' | 'act'>): string {
  return claims.act?.sub ?? claims.sub
}

/** Every agent a token speaks for (subject and all actors): revoking any of them kills it. */
export function agentsOf(claims: Pick<CapabilityClaims, 'sub' | 'act'>): string[] {
  const out = [claims.sub]
  for (let a = claims.act; a !== undefined; a = a.act) out.push(a.sub)
  return out
}
