/**
 * Declared egress destinations: parsing, host normalization and coverage.
 * Pure and dependency-free (the WHATWG `URL` host parser only), so the authority can use it
 * from the root entry to check that a spawned child's destinations are within its parent's,
 * and the egress guard (`agent-trust/egress`) uses exactly the same semantics per request.
 *
 * Grammar of one manifest `egress` entry:
 *
 * ```text
 * entry       = scheme "://" host [ ":" port ] [ "/" ] [ " internal" ]
 * scheme      = "http" / "https"
 * host        = dns-name / "*." dns-name / IPv4 / "[" IPv6 "]"
 * ```
 *
 * - Hosts are normalized the way undici itself normalizes them before connecting: the WHATWG
 *   URL host parser (percent-decoding, UTS #46 `domainToASCII`, lowercase, IPv4 number forms
 *   to dotted quad, IPv6 compression), then one trailing dot is dropped.
 * - `*.example.com` matches any name that ends in `.example.com` (a label boundary), never
 *   `example.com` itself nor `evilexample.com`. The suffix needs at least two labels.
 * - The port is exact; without one the scheme's default (80/443) applies.
 * - `internal` allows the name to resolve to loopback, private (RFC 1918), unique-local and
 *   CGNAT addresses. Without it only global unicast addresses are accepted at connect time.
 *   Cloud metadata, link-local, multicast, reserved and IPv4-embedding IPv6 forms are never
 *   allowed for a name; declare the literal address if you really mean it.
 * - An IP-literal entry (`http://127.0.0.1:8080`, `http://[::1]:8080`) allows exactly that
 *   address, whatever its class.
 */

export type EgressScheme = 'http' | 'https'
export type HostKind = 'name' | 'ipv4' | 'ipv6'

/** One parsed, normalized destination. */
export interface Destination {
  readonly scheme: EgressScheme
  /** ASCII, lowercase, no trailing dot; for a wildcard the suffix without `*.`; IPv6 in brackets. */
  readonly host: string
  readonly wildcard: boolean
  readonly kind: HostKind
  /** Effective port (default port of the scheme when not written). */
  readonly port: number
  /** May resolve to loopback / private / unique-local / CGNAT addresses. */
  readonly internal: boolean
  /** Canonical spelling, used in audit records and error details. */
  readonly text: string
}

export type DestinationParse = { readonly ok: true; readonly destination: Destination } | { readonly ok: false; readonly reason: string }

/** A request host after normalization. */
export interface NormalizedHost {
  readonly host: string
  readonly kind: HostKind
}

const DEFAULT_PORT: Readonly<Record<EgressScheme, number>> = { http: 80, https: 443 }
const MAX_ENTRY_LENGTH = 512
const MAX_NAME_LENGTH = 253
// After the URL parser: letters, digits, hyphen and underscore (seen in real DNS names).
// Anything else the URL parser lets through (`$`, `!`, `'`, ...) is refused.
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/
const IPV4 = /^(?:\d{1,3}\.){3}\d{1,3}$/
// Controls, space, DEL and everything non-ASCII-printable. The URL parser silently drops tabs
// and newlines inside a URL (`exa\tmple.com` becomes `example.com`), so refuse them first.
// eslint-disable-next-line no-control-regex
export const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]/

export function defaultPort(scheme: EgressScheme): number {
  return DEFAULT_PORT[scheme]
}

export function isEgressScheme(v: string): v is EgressScheme {
  return v === 'http' || v === 'https'
}

/**
 * Normalize the hostname of a parsed WHATWG URL (`url.hostname`, or undici's connect-time
 * `hostname`). Returns `undefined` for anything that is not a plain DNS name or IP literal.
 */
export function normalizeHost(hostname: string): NormalizedHost | undefined {
  if (typeof hostname !== 'string' || hostname.length === 0 || hostname.length > MAX_NAME_LENGTH + 2) return undefined
  if (hostname.startsWith('[')) {
    if (!hostname.endsWith(']') || hostname.includes('%')) return undefined
    return { host: hostname.toLowerCase(), kind: 'ipv6' }
  }
  // undici hands the connector IPv6 hosts without brackets.
  if (hostname.includes(':')) {
    if (hostname.includes('%') || !/^[0-9a-f:.]+$/i.test(hostname)) return undefined
    return normalizeHost(canonicalIPv6(hostname) ?? '')
  }
  let h = hostname.toLowerCase()
  if (h.endsWith('.')) h = h.slice(0, -1)
  if (IPV4.test(h)) return h.split('.').every((o) => Number(o) <= 255 && String(Number(o)) === o) ? { host: h, kind: 'ipv4' } : undefined
  if (h.length === 0 || h.length > MAX_NAME_LENGTH) return undefined
  const labels = h.split('.')
  for (const l of labels) if (!LABEL.test(l)) return undefined
  // A name whose last label is all digits would be an IPv4 number to the URL parser.
  if (/^\d+$/.test(labels[labels.length - 1] as string)) return undefined
  return { host: h, kind: 'name' }
}

/** IPv6 text -> the URL parser's canonical bracketed form, or undefined. */
function canonicalIPv6(text: string): string | undefined {
  try {
    return new URL(`http://[${text}]/`).hostname
  } catch {
    return undefined
  }
}

function fail(reason: string): DestinationParse {
  return { ok: false, reason }
}

/** Parse one `egress` entry. Never throws; see {@link parseDestination} for the throwing form. */
export function tryParseDestination(entry: unknown): DestinationParse {
  if (typeof entry !== 'string' || entry.length === 0 || entry.length > MAX_ENTRY_LENGTH)
    return fail('must be a non-empty string of at most 512 chars')
  const parts = entry.split(' ')
  const spec = parts[0] as string
  const flags = parts.slice(1)
  let internal = false
  for (const f of flags) {
    if (f === 'internal' && !internal) internal = true
    else return fail('the only option after the destination is a single " internal"')
  }
  if (CONTROL_OR_SPACE.test(spec)) return fail('contains a control character, space or invisible character')
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(spec)
  if (m === null) return fail('must look like scheme://host[:port]')
  const scheme = (m[1] as string).toLowerCase()
  if (!isEgressScheme(scheme)) return fail('the scheme must be http or https')
  let rest = m[2] as string
  if (/[@?#\\%]/.test(rest)) return fail('userinfo, query, fragment, backslash and percent-encoding are not allowed')
  if (rest.endsWith('/')) rest = rest.slice(0, -1)
  if (rest.includes('/')) return fail('a destination has no path')
  let wildcard = false
  if (rest.startsWith('*.')) {
    wildcard = true
    rest = rest.slice(2)
  }
  if (rest.includes('*')) return fail('a wildcard may only be a leading "*." label')
  let url: URL
  try {
    url = new URL(`${scheme}://${rest}/`)
  } catch {
    return fail('the host or port is not valid')
  }
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '')
    return fail('the host or port is not valid')
  const host = normalizeHost(url.hostname)
  if (host === undefined) return fail('the host is not a valid DNS name or IP literal')
  if (wildcard) {
    if (host.kind !== 'name') return fail('a wildcard applies to DNS names only')
    if (!host.host.includes('.')) return fail('a wildcard suffix needs at least two labels (*.example.com, not *.com)')
  }
  if (host.kind !== 'name' && internal) return fail('"internal" applies to DNS names; an IP literal already allows exactly its address')
  const port = url.port === '' ? DEFAULT_PORT[scheme] : Number(url.port)
  if (!Number.isInteger(port) || port < 1 || port > 65535) return fail('the port must be 1-65535')
  const shownHost = `${wildcard ? '*.' : ''}${host.host}`
  const text = `${scheme}://${shownHost}${port === DEFAULT_PORT[scheme] ? '' : `:${port}`}${internal ? ' internal' : ''}`
  return { ok: true, destination: Object.freeze({ scheme, host: host.host, wildcard, kind: host.kind, port, internal, text }) }
}

/** Parse one `egress` entry; throws a `TypeError` naming the reason (never the entry). */
export function parseDestination(entry: string): Destination {
  const r = tryParseDestination(entry)
  if (!r.ok) throw new TypeError(`invalid egress destination: ${r.reason}`)
  return r.destination
}

/** Does `dest` match a request to `scheme://host:port` (host already normalized)? */
export function destinationMatches(dest: Destination, scheme: string, host: NormalizedHost, port: number): boolean {
  if (dest.scheme !== scheme || dest.port !== port) return false
  if (!dest.wildcard) return dest.kind === host.kind && dest.host === host.host
  return host.kind === 'name' && host.host.length > dest.host.length + 1 && host.host.endsWith(`.${dest.host}`)
}

/**
 * Is everything `child` allows also allowed by `parent`? Same scheme and port; the host
 * exact, or a subdomain of a wildcard parent (a wildcard child needs a wildcard parent with
 * the same or a shorter suffix); `internal` only under an `internal` parent.
 */
export function destinationCovers(parent: Destination, child: Destination): boolean {
  if (parent.scheme !== child.scheme || parent.port !== child.port) return false
  if (child.internal && !parent.internal) return false
  if (!parent.wildcard) return !child.wildcard && parent.kind === child.kind && parent.host === child.host
  if (child.kind !== 'name') return false
  if (child.wildcard && child.host === parent.host) return true
  return child.host.endsWith(`.${parent.host}`)
}

/**
 * Is the `child` entry within the `parent` entries? Used by `Authority.spawn`: a child's
 * egress must be within its parent's. Any unparsable entry is not covered (fail closed).
 */
export function egressCovered(parent: readonly string[], child: string): boolean {
  const c = tryParseDestination(child)
  if (!c.ok) return false
  for (const p of parent) {
    const d = tryParseDestination(p)
    if (d.ok && destinationCovers(d.destination, c.destination)) return true
  }
  return false
}
