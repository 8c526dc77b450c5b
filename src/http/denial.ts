/**
 * The one answer every agent-trust HTTP surface gives for a denial (the authority service,
 * agent-to-agent endpoints, MCP Streamable HTTP): status from the error catalogue, and the
 * challenge of the Bearer scheme as RFC 6750 section 3 and the MCP authorization
 * specification define it.
 *
 * | code | status | `WWW-Authenticate` |
 * |---|---|---|
 * | no token (`ERR_TOKEN_MISSING`), no valid peer certificate (`ERR_PEER_UNAUTHENTICATED`) | 401 | `Bearer realm="<id>"` (RFC 6750: no error code without credentials) |
 * | a token that does not verify (malformed, expired, replayed, revoked, wrong audience, bound elsewhere, ...) | 401 | `Bearer realm="<id>", error="invalid_token"` |
 * | a valid token without the level or scope the call needs | 403 | `Bearer realm="<id>", error="insufficient_scope", scope="<required>"` |
 * | a request that is not of the expected shape | 400 | none |
 * | any other refusal (escalation, undeclared tool, egress, peer forbidden, ...) | 403 | none |
 * | the replay/revocation store or the authority did not answer | 503 | none; `Retry-After: 1` |
 * | anything unexpected | 500 | none |
 *
 * Every challenge also names the RFC 9728 protected-resource metadata document when the
 * surface serves one (`resource_metadata="<url>"`). The default body is
 * `{"error":{"code":"ERR_...","message":"<the catalogue's generic text>"}}`: never a token,
 * never internal details.
 */
import { ERROR_CATALOG, type AgentTrustError, type AgentTrustErrorCode, type CatalogEntry } from '../errors.js'

/** Seconds a client should wait before retrying after a 503 (the store's bound is far below). */
export const RETRY_AFTER_SECONDS = 1

export interface DenialOptions {
  /** The challenge's `realm`: the protected resource's id (the verifier's id). */
  readonly realm?: string
  /** The scope the call needed: the `scope` of an `insufficient_scope` challenge. */
  readonly requiredScope?: string
  /** URL of the RFC 9728 protected-resource metadata document, when the surface serves one. */
  readonly resourceMetadata?: string
  /** A body to send instead of the default JSON error (e.g. a JSON-RPC error object). */
  readonly body?: string
}

export interface DenialAnswer {
  readonly status: CatalogEntry['status']
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** The HTTP status of a code. */
export function statusOf(code: AgentTrustErrorCode): CatalogEntry['status'] {
  return (ERROR_CATALOG[code] as CatalogEntry | undefined)?.status ?? 500
}

/** An RFC 9110 quoted-string of printable ASCII: quotes, backslashes and controls are dropped. */
function quoted(v: string): string {
  return `"${v.replace(/[^\x20-\x7e]|["\\]/g, '')}"`
}

/** The `WWW-Authenticate` value for a code, or undefined when the code has no challenge. */
export function bearerChallenge(code: AgentTrustErrorCode, options: DenialOptions = {}): string | undefined {
  const entry = ERROR_CATALOG[code] as CatalogEntry | undefined
  if (entry === undefined || (entry.status !== 401 && entry.status !== 403)) return undefined
  const challenge = entry.challenge ?? (entry.status === 401 ? 'none' : undefined)
  if (challenge === undefined) return undefined
  const params: string[] = []
  if (options.realm !== undefined) params.push(`realm=${quoted(options.realm)}`)
  if (challenge !== 'none') params.push(`error="${challenge}"`)
  if (challenge === 'insufficient_scope' && options.requiredScope !== undefined) params.push(`scope=${quoted(options.requiredScope)}`)
  if (options.resourceMetadata !== undefined) params.push(`resource_metadata=${quoted(options.resourceMetadata)}`)
  return params.length === 0 ? 'Bearer' : `Bearer ${params.join(', ')}`
}

/** Status, headers and body for a denial. */
export function denialAnswer(error: AgentTrustError, options: DenialOptions = {}): DenialAnswer {
  const code = error.code
  const status = statusOf(code)
  const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store' }
  const challenge = bearerChallenge(code, options)
  if (challenge !== undefined) headers['www-authenticate'] = challenge
  if (status === 503) headers['retry-after'] = String(RETRY_AFTER_SECONDS)
  const body = options.body ?? JSON.stringify({ error: { code, message: ERROR_CATALOG[code]?.when ?? ERROR_CATALOG.ERR_GENERIC.when } })
  return { status, headers, body }
}
