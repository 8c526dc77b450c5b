/**
 * The sandbox plan: pure decisions, no I/O. From an instance key, the host's routes and an
 * agent's manifest entry, derive the names of every kernel object (so cleanup and `gc` find
 * them and never touch anything else), the point-to-point subnet, and the nftables rulesets.
 *
 * Kernel objects of one sandbox, all derived from its 8-hex-digit key `K`:
 *
 * - network namespace `atsb-K`, its files under `/etc/netns/atsb-K/` (hosts, resolv.conf);
 * - veth pair `atsbKh` (host side) / `atsbKc` (sandbox side), 13 chars (IFNAMSIZ is 16);
 * - nft table `inet atsb_K` in the host namespace and `inet agent_trust_sandbox` inside.
 */
import { createHash } from 'node:crypto'
import { tryParseDestination, type Destination } from '../policy/destination.js'

export const NAME_PREFIX = 'atsb'
const KEY = /^[0-9a-f]{8}$/
export const NETNS_NAME = /^atsb-([0-9a-f]{8})$/
export const HOST_TABLE_NAME = /^atsb_([0-9a-f]{8})$/
export const VETH_NAME = /^atsb([0-9a-f]{8})[hc]$/
/** The table inside a sandbox's namespace. */
export const INNER_TABLE = 'agent_trust_sandbox'
/** Default range the per-sandbox /30 subnets are taken from. */
export const DEFAULT_SUBNET_RANGE = '10.250.0.0/16'

export interface SandboxNames {
  readonly key: string
  readonly netns: string
  readonly hostVeth: string
  readonly sandboxVeth: string
  readonly hostTable: string
}

export function sandboxNames(key: string): SandboxNames {
  if (!KEY.test(key)) throw new TypeError('a sandbox key is 8 lowercase hex digits')
  return { key, netns: `atsb-${key}`, hostVeth: `atsb${key}h`, sandboxVeth: `atsb${key}c`, hostTable: `atsb_${key}` }
}

// ---- IPv4 arithmetic ------------------------------------------------------------------

export function ipv4ToInt(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip)
  if (m === null) return undefined
  const o = m.slice(1).map(Number)
  if (o.some((x, i) => x > 255 || String(x) !== m[i + 1])) return undefined
  return ((o[0] as number) * 2 ** 24 + (o[1] as number) * 2 ** 16 + (o[2] as number) * 2 ** 8 + (o[3] as number)) >>> 0
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

export interface Cidr {
  readonly base: number
  readonly prefix: number
}

export function parseCidr(text: string): Cidr | undefined {
  const [ip, p] = text.split('/')
  const base = ipv4ToInt(ip ?? '')
  const prefix = p === undefined ? 32 : Number(p)
  if (base === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32 || (p !== undefined && String(prefix) !== p))
    return undefined
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
  return { base: (base & mask) >>> 0, prefix }
}

function cidrEnd(c: Cidr): number {
  return c.base + 2 ** (32 - c.prefix) - 1
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base <= cidrEnd(b) && b.base <= cidrEnd(a)
}

export interface SandboxSubnet {
  /** `a.b.c.d/30` */
  readonly cidr: string
  /** Host side of the veth (the proxy listens here). */
  readonly hostIp: string
  /** Sandbox side of the veth. */
  readonly sandboxIp: string
}

/**
 * Choose a free /30 in `range` for the sandbox `key`: the first slot, starting at one derived
 * from the key, that overlaps none of `inUse` (the host's routes and addresses, as CIDRs).
 * Returns undefined when the range is not a valid IPv4 CIDR of /8-/30 or has no free slot.
 */
export function chooseSubnet(range: string, key: string, inUse: readonly string[]): SandboxSubnet | undefined {
  const r = parseCidr(range)
  if (r === undefined || r.prefix < 8 || r.prefix > 30) return undefined
  const used = inUse.map(parseCidr).filter((c): c is Cidr => c !== undefined && c.prefix > 0)
  const slots = 2 ** (30 - r.prefix)
  const start = Number.parseInt(key.slice(0, 8), 16) % slots
  for (let i = 0; i < slots; i++) {
    const slot = (start + i) % slots
    const c: Cidr = { base: r.base + slot * 4, prefix: 30 }
    if (used.some((u) => cidrsOverlap(u, c))) continue
    return { cidr: `${intToIpv4(c.base)}/30`, hostIp: intToIpv4(c.base + 1), sandboxIp: intToIpv4(c.base + 2) }
  }
  return undefined
}

// ---- what the agent may reach -------------------------------------------------------

/** A destination reached directly (routed, not through the proxy): an address and a TCP port. */
export interface DirectPeer {
  readonly address: string
  readonly port: number
  /** The manifest entry it comes from (canonical spelling). */
  readonly entry: string
  /** The declared name written into the sandbox's hosts file, when the entry is a name. */
  readonly name?: string
}

/**
 * The manifest entries reached directly rather than through the proxy: IP literals and
 * names declared `internal` (those are resolved once at start, by the caller).
 */
export function directEntries(egress: readonly string[]): Destination[] {
  const out: Destination[] = []
  for (const e of egress) {
    const r = tryParseDestination(e)
    if (!r.ok) continue
    const d = r.destination
    if (d.wildcard) continue
    if (d.kind === 'ipv4' || d.internal) out.push(d)
  }
  return out
}

/**
 * The TCP ports on which other agents of the manifest declare this agent as an `internal`
 * destination by its id (`http://<agent id>:<port> internal`): the only ports on which its
 * sandbox accepts connections, and only from sandboxes that declared it.
 */
export function inboundPorts(
  agents: ReadonlyArray<{ id: string; trustLevel: string; egress: readonly string[] }>,
  agentId: string,
): number[] {
  const id = agentId.toLowerCase()
  const ports = new Set<number>()
  for (const a of agents) {
    if (a.id === agentId || a.trustLevel === 'L0') continue
    for (const d of directEntries(a.egress)) if (d.kind === 'name' && d.internal && d.host === id) ports.add(d.port)
  }
  return [...ports].sort((x, y) => x - y)
}

export interface InnerRulesetInput {
  /** The proxy on the host side of the veth; absent for an L0 agent (loopback only). */
  readonly proxy?: { readonly address: string; readonly port: number }
  readonly direct: readonly DirectPeer[]
  /** Ports other sandboxes that declared this agent may connect to, at the sandbox's own address. */
  readonly inbound?: { readonly address: string; readonly ports: readonly number[] }
}

function ipv4Rule(p: { address: string; port: number }): string {
  if (ipv4ToInt(p.address) === undefined) throw new TypeError('a sandbox peer must be an IPv4 address')
  if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) throw new TypeError('a sandbox peer port must be 1-65535')
  return `ip daddr ${p.address} tcp dport ${p.port} accept`
}

/**
 * The ruleset inside the sandbox's namespace, applied in one `nft -f` transaction. Family
 * `inet` covers IPv4 and IPv6; the policy is drop on input and output: nothing leaves but TCP
 * to the proxy and to the direct peers (no UDP, so no DNS; no ICMP; no IPv6 at all).
 */
export function innerRuleset(input: InnerRulesetInput): string {
  const allow = [...(input.proxy === undefined ? [] : [input.proxy]), ...input.direct].map((p) => `    ${ipv4Rule(p)}`)
  return [
    `table inet ${INNER_TABLE}`,
    `delete table inet ${INNER_TABLE}`,
    `table inet ${INNER_TABLE} {`,
    '  chain output {',
    '    type filter hook output priority 0; policy drop;',
    '    oifname "lo" accept',
    '    ct state established,related accept',
    ...allow,
    '  }',
    '  chain input {',
    '    type filter hook input priority 0; policy drop;',
    '    iifname "lo" accept',
    '    ct state established,related accept',
    ...(input.inbound?.ports ?? []).map((port) => `    ${ipv4Rule({ address: input.inbound!.address, port })}`),
    '  }',
    '  chain forward {',
    '    type filter hook forward priority 0; policy drop;',
    '  }',
    '}',
    '',
  ].join('\n')
}

export interface HostRulesetInput {
  readonly table: string
  readonly hostVeth: string
  readonly subnet: SandboxSubnet
  readonly proxy?: { readonly address: string; readonly port: number }
  readonly direct: readonly DirectPeer[]
  /** Ports on which the sandbox accepts connections forwarded from other sandboxes' veths. */
  readonly inbound?: readonly number[]
  /** {@link agentTag} of the sandbox's agent, kept as an empty chain: the host-side record of whose sandbox it is. */
  readonly agentTag?: string
}

/** The agent's record in its sandbox's host table: `id_` and 64 hex digits (SHA-256 of the lower-cased id). */
export function agentTag(agentId: string): string {
  return `id_${createHash('sha256').update(agentId.toLowerCase()).digest('hex')}`
}
const AGENT_TAG = /^id_[0-9a-f]{64}$/

/**
 * The host-side half, in the host namespace: the same allowlist enforced where a process in
 * the sandbox cannot change it even if it kept capabilities. Packets from the sandbox's veth
 * may reach the host only at the proxy, and be forwarded only to the direct peers (source
 * NAT'd to the host so the peer's replies come back). Nothing is forwarded into the sandbox
 * but replies, and connections from other sandboxes to its `inbound` ports.
 */
export function hostRuleset(input: HostRulesetInput): string {
  if (!HOST_TABLE_NAME.test(input.table) || !VETH_NAME.test(input.hostVeth)) throw new TypeError('not a sandbox table or veth name')
  if (input.agentTag !== undefined && !AGENT_TAG.test(input.agentTag)) throw new TypeError('not an agent tag')
  const v = `iifname "${input.hostVeth}"`
  const fwd = input.direct.map((p) => `    ${v} ${ipv4Rule(p)}`)
  const nat = input.direct.map((p) => `    ip saddr ${input.subnet.sandboxIp} ip daddr ${p.address} tcp dport ${p.port} masquerade`)
  return [
    `table inet ${input.table}`,
    `delete table inet ${input.table}`,
    `table inet ${input.table} {`,
    '  chain input {',
    '    type filter hook input priority -10; policy accept;',
    ...(input.proxy === undefined ? [] : [`    ${v} ct state established,related accept`, `    ${v} ${ipv4Rule(input.proxy)}`]),
    `    ${v} drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority -10; policy accept;',
    `    oifname "${input.hostVeth}" ct state established,related accept`,
    `    ${v} ct state established,related accept`,
    ...fwd,
    `    ${v} drop`,
    // Only from another sandbox's veth (whose own table forwards only what it declared).
    ...(input.inbound ?? []).map(
      (port) => `    iifname "${NAME_PREFIX}*" oifname "${input.hostVeth}" ${ipv4Rule({ address: input.subnet.sandboxIp, port })}`,
    ),
    `    oifname "${input.hostVeth}" drop`,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority 100; policy accept;',
    ...nat,
    '  }',
    ...(input.agentTag === undefined ? [] : [`  chain ${input.agentTag} {`, '  }']),
    '}',
    '',
  ].join('\n')
}

/** The hosts file written into `/etc/netns/<ns>/hosts`: loopback and the declared internal names. */
export function hostsFile(direct: readonly DirectPeer[]): string {
  const lines = ['127.0.0.1 localhost', '::1 localhost']
  const seen = new Set<string>()
  for (const p of direct) {
    if (p.name === undefined || seen.has(p.name)) continue
    seen.add(p.name)
    lines.push(`${p.address} ${p.name}`)
  }
  return `${lines.join('\n')}\n`
}

/**
 * The `nsswitch.conf` written into `/etc/netns/<ns>/`: the host's, with host and network names
 * looked up in local files only. Other sources (systemd-resolved's `resolve`, `mdns`, `myhostname`, `nis`)
 * resolve over a host Unix socket or multicast, which a network namespace does not cut: inside,
 * `getaddrinfo` must not become a DNS channel through them. Every other database is kept.
 */
export function nsswitchFile(host: string | undefined): string {
  const lines = (host ?? '').split('\n').filter((l) => !/^\s*(hosts|networks)\s*:/.test(l))
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  return `${[...lines, '# agent-trust sandbox: names and networks from local files only', 'hosts: files', 'networks: files'].join('\n')}\n`
}

/** The proxy environment the command gets (both spellings: curl reads lower case, others upper). */
export function proxyEnv(proxy: { address: string; port: number } | undefined, direct: readonly DirectPeer[]): Record<string, string> {
  if (proxy === undefined) return {}
  const url = `http://${proxy.address}:${proxy.port}`
  const noProxy = [
    'localhost',
    '127.0.0.1',
    ...new Set(direct.flatMap((d) => (d.name === undefined ? [d.address] : [d.name, d.address]))),
  ].join(',')
  return { HTTP_PROXY: url, HTTPS_PROXY: url, http_proxy: url, https_proxy: url, NO_PROXY: noProxy, no_proxy: noProxy }
}

// ---- exports for deployments ----------------------------------------------------------

/** Label keys of the Kubernetes export: pods carry `agent-trust.io/agent: <agent id as a label value>`. */
export const K8S_AGENT_LABEL = 'agent-trust.io/agent'
export const K8S_ROLE_LABEL = 'agent-trust.io/role'

/** An agent id or a declared name as a Kubernetes label value (63 chars of [A-Za-z0-9._-], alphanumeric ends). */
export function labelValue(id: string): string {
  const v = id
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '')
  return v === '' ? 'agent' : v
}

/** An object name (RFC 1123 subdomain, 253 chars). */
function objectName(id: string): string {
  const v = `agent-trust-${id.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`.slice(0, 253).replace(/[^a-z0-9]+$/, '')
  return v
}

export interface NetworkPolicyInput {
  readonly agentId: string
  readonly trustLevel: string
  readonly egress: readonly string[]
  /** Port of the agent's egress proxy (pods labelled `agent-trust.io/role: egress-proxy` and the agent's label). */
  readonly proxyPort: number
  readonly namespace?: string
}

/**
 * A `networking.k8s.io/v1` NetworkPolicy: default-deny egress for the agent's pods; allowed:
 * the declared internal peers (pods labelled with the declared name, on the declared port),
 * declared IP literals (an /32 ipBlock), and the agent's own egress proxy (pods labelled
 * `agent-trust.io/role: egress-proxy` and `agent-trust.io/agent: <id>`) for every other destination.
 * An L0 agent gets no egress rule at all. DNS is not allowed (names come from the proxy).
 */
export function networkPolicy(input: NetworkPolicyInput): Record<string, unknown> {
  const rules: Array<Record<string, unknown>> = []
  let viaProxy = false
  if (input.trustLevel !== 'L0') {
    for (const e of input.egress) {
      const r = tryParseDestination(e)
      if (!r.ok) continue
      const d = r.destination
      const ports = [{ protocol: 'TCP', port: d.port }]
      if (d.kind === 'ipv4') rules.push({ to: [{ ipBlock: { cidr: `${d.host}/32` } }], ports })
      else if (d.kind === 'ipv6') rules.push({ to: [{ ipBlock: { cidr: `${d.host.slice(1, -1)}/128` } }], ports })
      else if (d.internal && !d.wildcard)
        rules.push({ to: [{ podSelector: { matchLabels: { [K8S_AGENT_LABEL]: labelValue(d.host) } } }], ports })
      else viaProxy = true
    }
    if (viaProxy)
      rules.push({
        // The agent's own proxy only: a proxy decides for one agent's egress list.
        to: [{ podSelector: { matchLabels: { [K8S_ROLE_LABEL]: 'egress-proxy', [K8S_AGENT_LABEL]: labelValue(input.agentId) } } }],
        ports: [{ protocol: 'TCP', port: input.proxyPort }],
      })
  }
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name: objectName(input.agentId),
      ...(input.namespace === undefined ? {} : { namespace: input.namespace }),
      labels: { 'app.kubernetes.io/managed-by': 'agent-trust', [K8S_AGENT_LABEL]: labelValue(input.agentId) },
    },
    spec: {
      podSelector: { matchLabels: { [K8S_AGENT_LABEL]: labelValue(input.agentId) } },
      policyTypes: ['Egress'],
      egress: rules,
    },
  }
}
