/**
 * IP address classification for connect-time egress checks. ipaddr.js does the range work;
 * explicit rules cover where it is too lenient for an egress guard:
 *
 * - it calls IPv4-compatible IPv6 (`::a.b.c.d`, `::/96`) and every unassigned IPv6 block
 *   (anything outside `2000::/3`) plain `unicast`: we call them `reserved`/`ipv4Embedded`;
 * - it has no notion of cloud metadata endpoints, some of which sit in ranges it calls
 *   `unicast` (Azure's 168.63.129.16) or `uniqueLocal` (AWS's fd00:ec2::254);
 * - IPv6 forms that carry an IPv4 address (mapped, compatible, SIIT, NAT64 well-known and
 *   local-use, 6to4, Teredo) are never global here: the IPv4 address they reach is whatever
 *   the network translates them to, so no class of the IPv6 address says anything safe.
 *
 * Only strict spellings are accepted (dotted-quad decimal IPv4, IPv6 without zone id): the
 * string checked is the string handed to the socket.
 */
import { createRequire } from 'node:module'
import type * as IpAddr from 'ipaddr.js'

// ipaddr.js is CommonJS with `export =` typings and no detectable named exports, so neither
// a default nor a named ESM import works without esModuleInterop: load it with require.
const ipaddr = createRequire(import.meta.url)('ipaddr.js') as typeof IpAddr

export type AddressClass =
  | 'global'
  | 'loopback'
  | 'private'
  | 'uniqueLocal'
  | 'carrierGradeNat'
  | 'linkLocal'
  | 'metadata'
  | 'multicast'
  | 'broadcast'
  | 'unspecified'
  | 'reserved'
  | 'benchmarking'
  | 'documentation'
  | 'ipv4Embedded'
  | 'siteLocal'
  | 'invalid'

/** Classes an `internal` destination may resolve to. Never metadata, link-local or embedded forms. */
export const INTERNAL_ADDRESS_CLASSES: ReadonlySet<AddressClass> = new Set(['loopback', 'private', 'uniqueLocal', 'carrierGradeNat'])

/** Cloud instance-metadata and host-agent endpoints (AWS, ECS, EKS, GCP, Azure, Alibaba, OCI). */
export const METADATA_ADDRESSES: readonly string[] = [
  '169.254.169.254',
  '169.254.169.253',
  '169.254.169.123',
  '169.254.170.2',
  '169.254.170.23',
  '100.100.100.200',
  '168.63.129.16',
  'fd00:ec2::254',
  'fd00:ec2::253',
  'fd00:ec2::23',
  'fd20:ce::254',
]

type V4 = IpAddr.IPv4
type V6 = IpAddr.IPv6

const metadataV4 = new Set(METADATA_ADDRESSES.filter((a) => !a.includes(':')))
const metadataV6 = new Set(METADATA_ADDRESSES.filter((a) => a.includes(':')).map((a) => ipaddr.IPv6.parse(a).toNormalizedString()))

const cidr6 = (s: string): [V6, number] => ipaddr.IPv6.parseCIDR(s) as [V6, number]
const cidr4 = (s: string): [V4, number] => ipaddr.IPv4.parseCIDR(s) as [V4, number]

const GLOBAL_UNICAST_V6 = cidr6('2000::/3')
const V4_COMPATIBLE = cidr6('::/96')
const V6_RESERVED_ZERO = cidr6('::/8')
const DOCUMENTATION_V4 = [cidr4('192.0.2.0/24'), cidr4('198.51.100.0/24'), cidr4('203.0.113.0/24')]
const BENCHMARKING_V4 = cidr4('198.18.0.0/15')
const DOCUMENTATION_V6 = [cidr6('2001:db8::/32'), cidr6('3fff::/20')]
const EMBEDDING_V6 = new Set(['ipv4Mapped', 'rfc6145', 'rfc6052', '6to4', 'teredo'])

function classifyV4(a: V4): AddressClass {
  if (metadataV4.has(a.toString())) return 'metadata'
  if (DOCUMENTATION_V4.some((r) => a.match(r))) return 'documentation'
  if (a.match(BENCHMARKING_V4)) return 'benchmarking'
  switch (a.range()) {
    case 'unicast':
      return 'global'
    case 'loopback':
      return 'loopback'
    case 'private':
      return 'private'
    case 'carrierGradeNat':
      return 'carrierGradeNat'
    case 'linkLocal':
      return 'linkLocal'
    case 'multicast':
      return 'multicast'
    case 'broadcast':
      return 'broadcast'
    case 'unspecified':
      return 'unspecified'
    default:
      // reserved, as112, amt, and any range a later ipaddr.js adds: not global.
      return 'reserved'
  }
}

function classifyV6(a: V6): AddressClass {
  if (metadataV6.has(a.toNormalizedString())) return 'metadata'
  // Widened to string: the typings lag the ranges the library returns (`deprecatedSiteLocal`).
  const range: string = a.range()
  if (EMBEDDING_V6.has(range)) return 'ipv4Embedded'
  if (range === 'unspecified') return 'unspecified'
  if (range === 'loopback') return 'loopback'
  if (a.match(V4_COMPATIBLE)) return 'ipv4Embedded'
  if (a.match(V6_RESERVED_ZERO)) return 'reserved'
  if (range === 'linkLocal') return 'linkLocal'
  if (range === 'multicast') return 'multicast'
  if (range === 'uniqueLocal') return 'uniqueLocal'
  if (range === 'deprecatedSiteLocal') return 'siteLocal'
  if (DOCUMENTATION_V6.some((r) => a.match(r))) return 'documentation'
  if (range === 'benchmarking') return 'benchmarking'
  // Only 2000::/3 is allocated for global unicast; ipaddr.js's own special blocks inside it
  // (documentation, ORCHID, AMT, AS112, 2001::/23 ...) are not global either.
  if (!a.match(GLOBAL_UNICAST_V6) || range !== 'unicast') return 'reserved'
  return 'global'
}

/** Classify one address as the resolver returned it. Anything unparsable is `invalid`. */
export function classifyAddress(address: string): AddressClass {
  if (typeof address !== 'string' || address.length === 0 || address.length > 45) return 'invalid'
  try {
    if (address.includes(':')) {
      if (address.includes('%') || !ipaddr.IPv6.isValid(address)) return 'invalid'
      return classifyV6(ipaddr.IPv6.parse(address))
    }
    if (!ipaddr.IPv4.isValidFourPartDecimal(address)) return 'invalid'
    return classifyV4(ipaddr.IPv4.parse(address))
  } catch {
    return 'invalid'
  }
}

/** Does an address of this class pass for a destination (`internal` or not)? */
export function addressClassAllowed(cls: AddressClass, internal: boolean): boolean {
  return cls === 'global' || (internal && INTERNAL_ADDRESS_CLASSES.has(cls))
}
