/**
 * The egress policy: pure decisions, no sockets. Given an agent's declared
 * destinations and trust level, decide a request (URL + method), a connection (scheme, host,
 * port) and the addresses a name resolved to. The undici interceptor and connector in
 * `interceptor.ts` only feed these functions and report their verdicts.
 *
 * Subpath: `agent-trust/egress`.
 */
import { ConfigInvalid, EgressDenied } from '../errors.js'
import { egressMethods, isTrustLevel, type TrustLevel } from '../policy/trust.js'
import { addressClassAllowed, classifyAddress, type AddressClass } from './address.js'
import {
  CONTROL_OR_SPACE,
  defaultPort,
  destinationMatches,
  isEgressScheme,
  normalizeHost,
  tryParseDestination,
  type Destination,
  type EgressScheme,
  type NormalizedHost,
} from '../policy/destination.js'

/** Why a request was denied: one stable name per check, carried as `details.rule`. */
export type EgressRule =
  | 'control-character'
  | 'url-invalid'
  | 'scheme'
  | 'userinfo'
  | 'host-syntax'
  | 'trust-level'
  | 'empty-allowlist'
  | 'not-declared'
  | 'ip-literal'
  | 'method'
  | 'path'
  | 'host-header'
  | 'address'
  | 'resolve-failed'
  | 'redirect-agent'
  | 'redirect-body'

export type EgressDecision =
  | {
      readonly allowed: true
      /** `scheme://host:port` of the request, normalized. */
      readonly origin: string
      readonly host: string
      /** The declared destinations that match (a wildcard and an exact entry may both). */
      readonly destinations: readonly Destination[]
      /** True when every address is acceptable because the literal address was declared. */
      readonly literal: boolean
      /** True when a matching destination is declared `internal`. */
      readonly internal: boolean
    }
  | {
      readonly allowed: false
      readonly rule: EgressRule
      readonly host?: string
      readonly origin?: string
      readonly reason: string
      readonly addressClass?: AddressClass
      /** For `resolve-failed`: the resolver's error code (`ENOTFOUND`, `ETIMEOUT`, ...). */
      readonly cause?: string
    }

export type Denial = Extract<EgressDecision, { allowed: false }>
export type Allowance = Extract<EgressDecision, { allowed: true }>

export interface EgressPolicyOptions {
  /** The agent's declared destinations (its manifest `egress` list). Empty denies all. */
  readonly egress: readonly string[]
  /** The agent's level: L0 no egress, L1 GET/HEAD only, L2/L3 any method. */
  readonly trustLevel: TrustLevel | (() => TrustLevel)
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// What a request-target may contain on the wire: printable ASCII, no space, no controls.
const PATH = /^\/[\u0021-\u007e]*$/
const ORIGIN_CACHE_MAX = 512

/** A denial with its rule, reason and, when known, the host and origin it names. */
export function deny(rule: EgressRule, reason: string, host?: string, origin?: string): Denial {
  return { allowed: false, rule, reason, ...(host === undefined ? {} : { host }), ...(origin === undefined ? {} : { origin }) }
}

/**
 * An agent's compiled policy. Build it once (at start); every method is pure and cheap.
 *
 * @example
 * ```ts
 * const policy = new EgressPolicy({ egress: ['https://api.example.com', 'https://*.docs.example.com'], trustLevel: 'L2' })
 * policy.decideUrl('https://external-api.com/upload', 'POST') // { allowed: false, rule: 'not-declared', ... }
 * ```
 */
export class EgressPolicy {
  readonly destinations: readonly Destination[]
  readonly #level: () => TrustLevel
  readonly #exact = new Map<string, Destination[]>()
  readonly #wildcards: Destination[] = []
  readonly #originCache = new Map<string, EgressDecision>()

  constructor(options: EgressPolicyOptions) {
    const { egress, trustLevel } = options ?? ({} as EgressPolicyOptions)
    if (!Array.isArray(egress)) throw new ConfigInvalid('egress must be an array of destinations', { details: { rule: 'egress' } })
    if (typeof trustLevel === 'function') this.#level = trustLevel
    else if (isTrustLevel(trustLevel)) this.#level = () => trustLevel
    else throw new ConfigInvalid('trustLevel must be L0, L1, L2 or L3', { details: { rule: 'trust-level' } })
    const parsed: Destination[] = []
    const bad: string[] = []
    egress.forEach((e, i) => {
      const r = tryParseDestination(e)
      if (r.ok) parsed.push(r.destination)
      else bad.push(`egress[${i}]: ${r.reason}`)
    })
    // Misuse is reported when the object is built: positions and reasons, never the values.
    if (bad.length > 0)
      throw new ConfigInvalid(`invalid egress destinations:\n${bad.join('\n')}`, { details: { rule: 'egress', issues: bad.length } })
    this.destinations = Object.freeze(parsed)
    for (const d of parsed) {
      if (d.wildcard) this.#wildcards.push(d)
      else {
        const k = `${d.scheme}|${d.host}|${d.port}`
        const list = this.#exact.get(k)
        if (list === undefined) this.#exact.set(k, [d])
        else list.push(d)
      }
    }
  }

  /** The current trust level (a function option is read on every decision). */
  get trustLevel(): TrustLevel {
    return this.#level()
  }

  /** Matching destinations for a normalized `scheme://host:port`. */
  match(scheme: EgressScheme, host: NormalizedHost, port: number): Destination[] {
    const exact = this.#exact.get(`${scheme}|${host.host}|${port}`) ?? []
    if (this.#wildcards.length === 0 || host.kind !== 'name') return exact
    const wild = this.#wildcards.filter((d) => destinationMatches(d, scheme, host, port))
    return wild.length === 0 ? exact : [...exact, ...wild]
  }

  /**
   * Decide a full URL as a tool or a user gives it (string or `URL`). Checks the raw string
   * for control and invisible characters before the URL parser can silently drop them.
   */
  decideUrl(input: string | URL, method: string): EgressDecision {
    let url: URL
    if (input instanceof URL) url = input
    else {
      if (typeof input !== 'string' || input.length === 0 || input.length > 8192)
        return deny('url-invalid', 'the URL is empty, not a string or too long')
      if (CONTROL_OR_SPACE.test(input)) return deny('control-character', 'the URL contains a control, space or invisible character')
      try {
        url = new URL(input)
      } catch {
        return deny('url-invalid', 'the URL does not parse')
      }
    }
    if (url.username !== '' || url.password !== '')
      return deny('userinfo', 'URLs with userinfo (user:password@) are refused', safeHost(url))
    const d = this.decideOriginOf(url)
    if (!d.allowed) return d
    return this.#decideMethod(d, method)
  }

  /**
   * Decide an undici dispatch: `origin` (string or URL) + `path` + `method`. The origin must
   * be a bare origin, exactly as undici requires; the path must be origin-form (`/...`),
   * never absolute-form (`http://other/`), which a proxy would follow.
   */
  decideDispatch(origin: string | URL | undefined, path: unknown, method: unknown): EgressDecision {
    let d: EgressDecision
    if (typeof origin === 'string') {
      // The hot path: undici's request() and fetch pass `url.origin` strings. Verdicts on a
      // given string never change (levels are applied below), so they are cached by it.
      const cached = this.#originCache.get(origin)
      if (cached !== undefined) d = cached
      else {
        d = this.#decideOriginString(origin)
        if (origin.length <= 2048) {
          if (this.#originCache.size >= ORIGIN_CACHE_MAX) this.#originCache.clear()
          this.#originCache.set(origin, d)
        }
      }
    } else if (origin instanceof URL) d = this.#decideBareOrigin(origin)
    else return deny('url-invalid', 'the request has no origin')
    if (!d.allowed) return d
    if (typeof path !== 'string' || path.length > 65536 || !PATH.test(path)) {
      return deny('path', 'the request path must be origin-form (/...) of printable ASCII', d.host, d.origin)
    }
    return this.#decideMethod(d, method)
  }

  #decideOriginString(origin: string): EgressDecision {
    if (origin.length > 2048) return deny('url-invalid', 'the origin is too long')
    if (CONTROL_OR_SPACE.test(origin)) return deny('control-character', 'the origin contains a control, space or invisible character')
    let url: URL
    try {
      url = new URL(origin)
    } catch {
      return deny('url-invalid', 'the origin does not parse')
    }
    return this.#decideBareOrigin(url)
  }

  #decideBareOrigin(url: URL): EgressDecision {
    if (url.username !== '' || url.password !== '')
      return deny('userinfo', 'origins with userinfo (user:password@) are refused', safeHost(url))
    if (url.pathname !== '/' || url.search !== '' || url.hash !== '')
      return deny('url-invalid', 'the origin must not carry a path, query or fragment', safeHost(url))
    // Level-independent (cached); #decideMethod applies the level, L0 included.
    return this.#decideOrigin(url)
  }

  /** Scheme, host syntax, allowlist (level-independent), then the L0 rule. */
  decideOriginOf(url: URL): EgressDecision {
    const d = this.#decideOrigin(url)
    if (d.allowed && this.#level() === 'L0') return deny('trust-level', 'an L0 agent has no egress', d.host, d.origin)
    return d
  }

  #decideOrigin(url: URL): EgressDecision {
    const scheme = url.protocol.slice(0, -1)
    if (!isEgressScheme(scheme)) return deny('scheme', 'only http and https are allowed', safeHost(url))
    const host = normalizeHost(url.hostname)
    if (host === undefined) return deny('host-syntax', 'the host is not a plain DNS name or IP literal', safeHost(url))
    const port = url.port === '' ? defaultPort(scheme) : Number(url.port)
    return this.#decideTarget(scheme, host, port)
  }

  #decideTarget(scheme: EgressScheme, host: NormalizedHost, port: number): EgressDecision {
    const origin = `${scheme}://${host.host}:${port}`
    if (this.destinations.length === 0) return deny('empty-allowlist', 'the agent declares no destinations', host.host, origin)
    const matched = this.match(scheme, host, port)
    if (matched.length === 0) {
      if (host.kind !== 'name')
        return deny('ip-literal', 'IP-literal hosts are refused unless the exact address is declared', host.host, origin)
      return deny('not-declared', `no declared destination matches ${origin}`, host.host, origin)
    }
    return Object.freeze({
      allowed: true as const,
      origin,
      host: host.host,
      destinations: matched,
      literal: host.kind !== 'name',
      internal: matched.some((m) => m.internal),
    })
  }

  #decideMethod(d: Allowance, method: unknown): EgressDecision {
    if (typeof method !== 'string' || !TOKEN.test(method) || method === 'CONNECT') {
      return deny('method', 'the method is not a valid HTTP method, or is CONNECT', d.host, d.origin)
    }
    const allowed = egressMethods(this.#level())
    if (allowed === 'none') return deny('trust-level', 'an L0 agent has no egress', d.host, d.origin)
    if (allowed !== 'any' && !allowed.includes(method))
      return deny('method', `an L1 agent may only use ${allowed.join(' and ')}`, d.host, d.origin)
    return d
  }

  /**
   * Connect-time check of the socket's target as undici's connector sees it (`protocol`
   * `'http:'`/`'https:'`, `hostname` without brackets, `port` possibly empty).
   */
  decideConnect(protocol: string, hostname: string, port: string | number | undefined): EgressDecision {
    const scheme = typeof protocol === 'string' ? protocol.replace(/:$/, '') : ''
    if (!isEgressScheme(scheme)) return deny('scheme', 'only http and https are allowed')
    const host = normalizeHost(hostname)
    if (host === undefined) return deny('host-syntax', 'the host is not a plain DNS name or IP literal')
    const p = port === undefined || port === '' ? defaultPort(scheme) : Number(port)
    if (!Number.isInteger(p) || p < 1 || p > 65535) return deny('url-invalid', 'the port is not valid', host.host)
    const d = this.#decideTarget(scheme, host, p)
    if (d.allowed && this.#level() === 'L0') return deny('trust-level', 'an L0 agent has no egress', d.host, d.origin)
    return d
  }

  /**
   * Decide the addresses a name resolved to. Every address must pass: a mixed answer (one
   * public, one private) is denied as a whole, since the socket could use any of them and a
   * mixed answer is the classic DNS-rebinding shape.
   */
  decideAddresses(allowance: Allowance, addresses: readonly string[]): EgressDecision {
    if (addresses.length === 0) return deny('resolve-failed', 'the name resolved to no address', allowance.host, allowance.origin)
    for (const a of addresses) {
      const cls = classifyAddress(a)
      if (!addressClassAllowed(cls, allowance.internal)) {
        const why = allowance.internal
          ? 'is not global unicast nor an allowed internal address'
          : 'is not global unicast (declare the destination "internal" if it is meant to be)'
        return { ...deny('address', `a resolved address (${cls}) ${why}`, allowance.host, allowance.origin), addressClass: cls }
      }
    }
    return allowance
  }
}

/**
 * True when a `Host` field value names the request's own host (with or without its port). A
 * Host naming another site would reach that virtual host on the declared server (domain
 * fronting).
 */
export function hostHeaderMatches(d: Allowance, value: string): boolean {
  const v = value.trim().toLowerCase()
  const port = d.origin.slice(d.origin.lastIndexOf(':') + 1)
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(v) as RegExpExecArray
  const bare = (m[1] as string).replace(/\.$/, '')
  return bare === d.host && (m[2] === undefined || String(Number(m[2])) === port)
}

function safeHost(url: URL): string | undefined {
  return normalizeHost(url.hostname)?.host
}

/** Build the coded error for a denial. Names the host and the rule, never headers or body. */
export function egressDenied(d: Denial, agentId: string): EgressDenied {
  const where = d.host === undefined ? 'the request' : `"${d.host}"`
  return new EgressDenied(`egress to ${where} denied for agent "${agentId}" (rule ${d.rule}): ${d.reason}`, {
    details: {
      agentId,
      rule: d.rule,
      ...(d.host === undefined ? {} : { host: d.host }),
      ...(d.addressClass === undefined ? {} : { addressClass: d.addressClass }),
      ...(d.cause === undefined ? {} : { cause: d.cause }),
    },
  })
}

export { classifyAddress, addressClassAllowed }
export type { AddressClass }
