/**
 * W3C Trace Context (`traceparent`, `tracestate`) and W3C Baggage (`baggage`) as MCP carries
 * them in `params._meta`: which of a request's keys may travel on to another server. Pure.
 *
 * Only these three keys are ever taken, each only when well-formed and within the bounds of
 * `limits.ts`; a `tracestate` only with a valid `traceparent` (Trace Context section 3.3:
 * it is meaningless alone). Anything else (a capability, another vendor's key) is never
 * part of the result, so a caller cannot smuggle data upstream through it.
 */
import { MAX_BAGGAGE_LENGTH, MAX_BAGGAGE_MEMBERS, MAX_TRACESTATE_LENGTH, MAX_TRACESTATE_MEMBERS } from './limits.js'

export interface TraceContext {
  readonly traceparent?: string
  readonly tracestate?: string
  readonly baggage?: string
}

// version 00 form: version "-" trace-id "-" parent-id "-" flags, lower-case hex (section 3.2).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
// section 3.3.1.3: simple-key or tenant@system key; value of printable ASCII but "," and "=", not ending in a space.
const TRACESTATE_MEMBER =
  /^(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/
// W3C Baggage: key = token, value = baggage-octets or percent-encoding, optional ";"-properties; printable ASCII only.
const BAGGAGE_MEMBER = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ *= *[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]* *(?:;[\x20-\x2b\x2d-\x7e]*)*$/

/**
 * Both headers are lists whose members may be padded with optional whitespace, which is only
 * spaces and tabs (RFC 9110 section 5.6.3); anything else outside printable ASCII (CR, LF,
 * U+2028, a no-break space, a BOM) makes the whole value invalid: it must never reach a server
 * that copies it into an HTTP header.
 */
const LIST_TEXT = /^[\t\x20-\x7e]*$/
const ows = (m: string): string => m.replace(/^[\t ]+|[\t ]+$/g, '')

export function isTraceparent(v: unknown): v is string {
  if (typeof v !== 'string') return false
  const m = TRACEPARENT.exec(v)
  if (m === null) return false
  const [, version, traceId, parentId] = m
  return version !== 'ff' && !/^0+$/.test(traceId!) && !/^0+$/.test(parentId!)
}

export function isTracestate(v: unknown): v is string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_TRACESTATE_LENGTH || !LIST_TEXT.test(v)) return false
  const members = v.split(',').map(ows)
  if (members.length > MAX_TRACESTATE_MEMBERS) return false
  const keys = new Set<string>()
  for (const m of members) {
    if (!TRACESTATE_MEMBER.test(m)) return false
    const key = m.slice(0, m.indexOf('='))
    if (keys.has(key)) return false
    keys.add(key)
  }
  return true
}

export function isBaggage(v: unknown): v is string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_BAGGAGE_LENGTH || !LIST_TEXT.test(v)) return false
  const members = v.split(',')
  return members.length <= MAX_BAGGAGE_MEMBERS && members.every((m) => BAGGAGE_MEMBER.test(ows(m)))
}

/** The trace context of a request's `_meta` that may be forwarded: the valid keys only, or undefined when none is. */
export function forwardableTraceContext(meta: unknown): TraceContext | undefined {
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return undefined
  const own = (k: string): unknown => (Object.prototype.hasOwnProperty.call(meta, k) ? (meta as Record<string, unknown>)[k] : undefined)
  const out: { traceparent?: string; tracestate?: string; baggage?: string } = {}
  const traceparent = own('traceparent')
  if (isTraceparent(traceparent)) {
    out.traceparent = traceparent
    const tracestate = own('tracestate')
    if (isTracestate(tracestate)) out.tracestate = tracestate
  }
  const baggage = own('baggage')
  if (isBaggage(baggage)) out.baggage = baggage
  return Object.keys(out).length === 0 ? undefined : out
}
