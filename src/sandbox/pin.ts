/**
 * DNS pinning for the egress proxy: resolve a declared name, check every address with the
 * guard's address rules, and dial the first one, which is the address that was checked.
 *
 * A verdict on a name is kept for `ttlMs` (per origin: the `internal` flag of the matching
 * destination can differ by scheme and port), so a keep-alive client does not pay a lookup
 * per request. What is kept is exactly what a new lookup would decide on the same answer; a
 * failed lookup is never kept, and concurrent requests share one lookup.
 */
import { isIP } from 'node:net'
import type { Allowance, Denial, EgressPolicy } from '../egress/policy.js'

export type ProxyResolver = (hostname: string) => Promise<ReadonlyArray<{ address: string }>>
export type Pinned = { ok: true; address: string } | { ok: false; denial: Denial }

/** Default lifetime of a kept verdict on a name. */
export const DEFAULT_DNS_TTL_MS = 5000
const MAX_ENTRIES = 1024

export function createPinner(
  policy: EgressPolicy,
  resolver: ProxyResolver,
  ttlMs: number = DEFAULT_DNS_TTL_MS,
): (a: Allowance, hostname: string) => Pinned | Promise<Pinned> {
  const kept = new Map<string, { until: number; verdict: Pinned }>()
  const inFlight = new Map<string, Promise<Pinned>>()

  const lookup = async (a: Allowance, bare: string): Promise<Pinned> => {
    let addresses: string[]
    try {
      addresses = (await resolver(bare)).map((r) => String(r.address))
    } catch {
      addresses = []
    }
    const d = policy.decideAddresses(a, addresses)
    const verdict: Pinned = d.allowed ? { ok: true, address: addresses[0] as string } : { ok: false, denial: d }
    if (addresses.length > 0 && ttlMs > 0) {
      if (kept.size >= MAX_ENTRIES) kept.clear()
      kept.set(a.origin, { until: performance.now() + ttlMs, verdict })
    }
    return verdict
  }

  return (a, hostname) => {
    const bare = hostname.replace(/^\[|\]$/g, '')
    if (a.literal || isIP(bare) !== 0) return { ok: true, address: bare }
    const k = kept.get(a.origin)
    if (k !== undefined) {
      if (k.until > performance.now()) return k.verdict
      kept.delete(a.origin)
    }
    let p = inFlight.get(a.origin)
    if (p === undefined) {
      p = lookup(a, bare).finally(() => inFlight.delete(a.origin))
      inFlight.set(a.origin, p)
    }
    return p
  }
}
