/**
 * SPIFFE IDs for agent-trust workloads (pure; no I/O).
 *
 * Every certificate the CA issues names exactly one workload in one URI SAN:
 * `spiffe://<trust-domain>/<kind>/<id>`, where kind is `agent` (an agent in the manifest),
 * `operator` (a human operator's tool: revocation, trust decisions) or `authority` (the
 * authority service's server certificate). Kinds are disjoint so that an agent can never
 * act as an operator or impersonate the authority, whatever its id.
 */
import { isAgentId } from '../policy/claims.js'

export const WORKLOAD_KINDS = ['agent', 'operator', 'authority'] as const
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number]

/** Who a certificate speaks for. */
export interface Workload {
  readonly kind: WorkloadKind
  /** For `agent`: the agent id of the manifest. */
  readonly id: string
}

/** SPIFFE trust domain: lowercase letters, digits, `.`, `-`, `_` (SPIFFE ID spec 2.1). */
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/
/** SPIFFE path segment characters (SPIFFE ID spec 2.2). */
const SEGMENT = /^[A-Za-z0-9._-]+$/
/** SPIFFE IDs are at most 2048 bytes. */
const MAX_SPIFFE_ID_LENGTH = 2048

export function isTrustDomain(v: unknown): v is string {
  return typeof v === 'string' && TRUST_DOMAIN.test(v) && v !== '.' && v !== '..'
}

/**
 * True when `id` can be carried in a SPIFFE ID: a valid agent id whose `/`-separated
 * segments are non-empty, use only `[A-Za-z0-9._-]` and are not `.` or `..`. Agent ids
 * with `@` or `:` are valid in tokens but cannot hold a certificate.
 */
export function isSpiffeRepresentable(id: unknown): id is string {
  if (!isAgentId(id)) return false
  for (const seg of id.split('/')) {
    if (seg === '.' || seg === '..' || !SEGMENT.test(seg)) return false
  }
  return true
}

/** `spiffe://<trust-domain>/<kind>/<id>`. Throws `TypeError` for an id or domain that cannot be expressed. */
export function spiffeIdOf(trustDomain: string, workload: Workload): string {
  if (!isTrustDomain(trustDomain)) throw new TypeError('the trust domain must be 1-255 chars of [a-z0-9._-]')
  if (!(WORKLOAD_KINDS as readonly string[]).includes(workload?.kind))
    throw new TypeError('workload kind must be agent, operator or authority')
  if (!isSpiffeRepresentable(workload.id)) {
    throw new TypeError('this id cannot be carried in a SPIFFE ID: use segments of [A-Za-z0-9._-] separated by "/"')
  }
  const out = `spiffe://${trustDomain}/${workload.kind}/${workload.id}`
  if (out.length > MAX_SPIFFE_ID_LENGTH) throw new TypeError('the SPIFFE ID exceeds 2048 bytes')
  return out
}

/** The agent's SPIFFE ID: `spiffe://<trust-domain>/agent/<agentId>`. */
export function agentSpiffeId(trustDomain: string, agentId: string): string {
  return spiffeIdOf(trustDomain, { kind: 'agent', id: agentId })
}

/**
 * Parse a SPIFFE ID of `trustDomain` into its workload; `undefined` for anything else
 * (another trust domain, another scheme, query, fragment, port, userinfo, percent-encoding,
 * empty or dot segments, unknown kind). Parsing is by exact grammar, never by URL
 * normalisation, so one identity has exactly one spelling.
 */
export function parseSpiffeId(uri: unknown, trustDomain: string): Workload | undefined {
  if (typeof uri !== 'string' || uri.length > MAX_SPIFFE_ID_LENGTH) return undefined
  const prefix = `spiffe://${trustDomain}/`
  if (!isTrustDomain(trustDomain) || !uri.startsWith(prefix)) return undefined
  const path = uri.slice(prefix.length)
  const slash = path.indexOf('/')
  if (slash < 0) return undefined
  const kind = path.slice(0, slash)
  const id = path.slice(slash + 1)
  if (!(WORKLOAD_KINDS as readonly string[]).includes(kind)) return undefined
  if (!isSpiffeRepresentable(id)) return undefined
  return { kind: kind as WorkloadKind, id }
}
