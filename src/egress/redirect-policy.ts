/**
 * Redirect hops decided from their raw `Location`, before undici, `fetch` or the caller follows
 * them. Pure: the undici handlers in `redirects.ts` feed these functions.
 */
import { CONTROL_OR_SPACE } from '../policy/destination.js'
import { deny, type EgressDecision, type EgressPolicy } from './policy.js'

/** The hop a redirect answers: its bare origin, origin-form path and method. */
export interface RedirectFrom {
  readonly origin: string
  readonly path: string
  readonly method: string
}

/** What a redirect would dispatch next, once decided. */
export interface RedirectDecision {
  readonly decision: EgressDecision
  /** The method of the next hop (303, and 301/302 after POST, become GET, as undici and fetch do). */
  readonly method: string
}

const REDIRECT_STATUS = new Set([300, 301, 302, 303, 307, 308])

/** True for the status codes undici and fetch follow. */
export function isRedirectStatus(status: number): boolean {
  return REDIRECT_STATUS.has(status)
}

/**
 * Decide a redirect hop from its raw `Location`, before anything follows it: the same
 * raw-URL checks as a first URL (control and invisible characters, userinfo, scheme,
 * allowlist, level), plus two rules that keep a redirect from changing whom the request acts
 * on: a body (any method other than GET/HEAD after the status's method rewrite) is never
 * carried to another origin (RFC 9110 section 15.4.8 lets 307/308 replay it), and a hop never
 * crosses into a registered agent's origin from another origin (a fresh token would be
 * minted for that agent, as the caller).
 */
export function decideRedirect(
  policy: EgressPolicy,
  from: RedirectFrom,
  status: number,
  location: string,
  agentOrigins?: ReadonlySet<string>,
): RedirectDecision {
  const m = from.method.toUpperCase()
  const method = (status === 303 && m !== 'HEAD') || ((status === 301 || status === 302) && m === 'POST') ? 'GET' : m
  if (typeof location !== 'string' || location.length === 0 || location.length > 8192)
    return { method, decision: deny('url-invalid', 'the redirect has an empty or oversized Location') }
  // Checked raw: the URL parser silently drops tabs and newlines and maps soft hyphens and
  // zero-width characters to nothing (WHATWG URL, UTS #46); such a Location is refused.
  if (CONTROL_OR_SPACE.test(location))
    return { method, decision: deny('control-character', 'the redirect Location contains a control, space or invisible character') }
  let url: URL
  try {
    url = new URL(location, `${from.origin}${from.path}`)
  } catch {
    return { method, decision: deny('url-invalid', 'the redirect Location does not parse') }
  }
  const d = policy.decideUrl(url, method)
  if (!d.allowed) return { method, decision: d }
  const next = url.origin
  if (next !== sameOrigin(from.origin)) {
    if (method !== 'GET' && method !== 'HEAD')
      return {
        method,
        decision: deny('redirect-body', `a ${method} redirect would replay the request body to another origin`, d.host, d.origin),
      }
    if (agentOrigins !== undefined && agentOrigins.has(next))
      return {
        method,
        decision: deny('redirect-agent', 'a redirect from another origin may not lead to a registered agent', d.host, d.origin),
      }
  }
  return { method, decision: d }
}

function sameOrigin(origin: string): string {
  try {
    return new URL(origin).origin
  } catch {
    return origin
  }
}
