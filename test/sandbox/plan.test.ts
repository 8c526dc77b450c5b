/** The sandbox plan: names, subnet choice, rulesets (checked by the real `nft -c`), hosts file, NetworkPolicy. */
import { execFileSync } from 'node:child_process'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  agentTag,
  chooseSubnet,
  cidrsOverlap,
  directEntries,
  hostRuleset,
  hostsFile,
  inboundPorts,
  nsswitchFile,
  innerRuleset,
  labelValue,
  networkPolicy,
  parseCidr,
  proxyEnv,
  sandboxNames,
  VETH_NAME,
  NETNS_NAME,
  HOST_TABLE_NAME,
} from '../../src/sandbox/plan.js'
import { hasNetAdmin, preflight } from '../../src/sandbox/system.js'

const nftCheck = (rules: string): void => void execFileSync('nft', ['-c', '-f', '-'], { input: rules, stdio: ['pipe', 'pipe', 'pipe'] })

describe('sandbox names', () => {
  it('derives every kernel name from the key, within IFNAMSIZ, matched by the gc patterns', () => {
    const n = sandboxNames('0a1b2c3d')
    expect(n).toEqual({
      key: '0a1b2c3d',
      netns: 'atsb-0a1b2c3d',
      hostVeth: 'atsb0a1b2c3dh',
      sandboxVeth: 'atsb0a1b2c3dc',
      hostTable: 'atsb_0a1b2c3d',
    })
    expect(n.hostVeth.length).toBeLessThan(16)
    expect(
      NETNS_NAME.test(n.netns) && VETH_NAME.test(n.hostVeth) && VETH_NAME.test(n.sandboxVeth) && HOST_TABLE_NAME.test(n.hostTable),
    ).toBe(true)
  })
  it('refuses keys that could name something else (gc never touches other objects)', () => {
    for (const k of ['', 'ABCDEF12', '0a1b2c3', '0a1b2c3d4', '../etc00', 'docker00']) expect(() => sandboxNames(k)).toThrow(TypeError)
    for (const other of ['docker0', 'eth0', 'atsb-0a1b2c3', 'atsb-0a1b2c3dx', 'veth1234', 'atsb0a1b2c3dz'])
      expect(NETNS_NAME.test(other) || VETH_NAME.test(other)).toBe(false)
  })
})

describe('chooseSubnet', () => {
  it('takes a /30 in the range that overlaps none of the host prefixes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }).map((n) => n.toString(16).padStart(8, '0')),
        fc.array(
          fc
            .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 16, max: 32 }))
            .map(([a, b, p]) => `10.250.${a}.${b}/${p}`),
          { maxLength: 30 },
        ),
        (key, inUse) => {
          const s = chooseSubnet('10.250.0.0/16', key, inUse)
          if (s === undefined) return
          const c = parseCidr(s.cidr)!
          expect(cidrsOverlap(c, parseCidr('10.250.0.0/16')!)).toBe(true)
          for (const u of inUse) expect(cidrsOverlap(c, parseCidr(u)!)).toBe(false)
        },
      ),
    )
  })
  it('fails closed when the range is full or invalid', () => {
    expect(chooseSubnet('10.250.0.0/30', '00000000', ['10.250.0.1/32'])).toBeUndefined()
    expect(chooseSubnet('10.250.0.0/16', '00000000', ['10.0.0.0/8'])).toBeUndefined()
    for (const r of ['10.250.0.0', '10.250.0.0/31', '0.0.0.0/0', 'x/16', '10.250.0.0/016'])
      expect(chooseSubnet(r, '00000000', [])).toBeUndefined()
    expect(chooseSubnet('10.250.0.0/30', '00000000', [])).toEqual({ cidr: '10.250.0.0/30', hostIp: '10.250.0.1', sandboxIp: '10.250.0.2' })
  })
})

describe('rulesets', () => {
  const subnet = { cidr: '10.250.0.0/30', hostIp: '10.250.0.1', sandboxIp: '10.250.0.2' }
  const direct = [{ address: '10.251.8.2', port: 8080, entry: 'http://10.251.8.2:8080' }]
  it('the inner ruleset drops by default and passes nft -c', () => {
    const r = innerRuleset({ proxy: { address: '10.250.0.1', port: 3128 }, direct })
    expect(r).toContain('policy drop')
    expect(r).toContain('ip daddr 10.250.0.1 tcp dport 3128 accept')
    expect(r).toContain('ip daddr 10.251.8.2 tcp dport 8080 accept')
    expect(r).not.toMatch(/udp|icmp|ip6/)
    nftCheck(r)
    nftCheck(innerRuleset({ direct: [] }))
  })
  it('the host ruleset passes nft -c', () => {
    nftCheck(
      hostRuleset({ table: 'atsb_0a1b2c3d', hostVeth: 'atsb0a1b2c3dh', subnet, proxy: { address: '10.250.0.1', port: 3128 }, direct }),
    )
    nftCheck(hostRuleset({ table: 'atsb_0a1b2c3d', hostVeth: 'atsb0a1b2c3dh', subnet, direct: [] }))
  })
  it('opens inbound ports only where another agent declared this one, only from sandbox veths, and passes nft -c', () => {
    const agents = [
      { id: 'agent-a', trustLevel: 'L2', egress: [] },
      {
        id: 'agent-b',
        trustLevel: 'L1',
        egress: ['http://agent-a:7000 internal', 'http://agent-a:7001', 'http://agent-a.example:7002 internal'],
      },
      { id: 'agent-c', trustLevel: 'L0', egress: ['http://agent-a:7003 internal'] },
      { id: 'agent-d', trustLevel: 'L2', egress: ['https://AGENT-A:7443 internal'] },
    ]
    // Not internal (7001), another name (7002), an L0 agent that has no network (7003): no port.
    expect(inboundPorts(agents, 'agent-a')).toEqual([7000, 7443])
    expect(inboundPorts(agents, 'agent-b')).toEqual([])
    const host = hostRuleset({ table: 'atsb_0a1b2c3d', hostVeth: 'atsb0a1b2c3dh', subnet, direct: [], inbound: [7000] })
    expect(host).toContain('iifname "atsb*" oifname "atsb0a1b2c3dh" ip daddr 10.250.0.2 tcp dport 7000 accept')
    expect(host.indexOf('tcp dport 7000 accept')).toBeLessThan(host.indexOf('oifname "atsb0a1b2c3dh" drop'))
    nftCheck(host)
    // Whose sandbox it is: a tag chain in the host table, which nothing inside the sandbox can change.
    const tagged = hostRuleset({ table: 'atsb_0a1b2c3d', hostVeth: 'atsb0a1b2c3dh', subnet, direct: [], agentTag: agentTag('Agent-A') })
    expect(tagged).toContain(`chain ${agentTag('agent-a')} {`)
    expect(agentTag('agent-a')).toMatch(/^id_[0-9a-f]{64}$/)
    nftCheck(tagged)
    expect(() =>
      hostRuleset({ table: 'atsb_0a1b2c3d', hostVeth: 'atsb0a1b2c3dh', subnet, direct: [], agentTag: 'x; flush ruleset' }),
    ).toThrow(TypeError)
    const inner = innerRuleset({ direct: [], inbound: { address: '10.250.0.2', ports: [7000] } })
    expect(inner).toContain('ip daddr 10.250.0.2 tcp dport 7000 accept')
    nftCheck(inner)
  })
  it('never writes a peer that is not a strict IPv4 address and port (no injection into the ruleset)', () => {
    for (const address of ['10.0.0.1; flush ruleset', '::1', '010.0.0.1', '10.0.0.256', 'example.com'])
      expect(() => innerRuleset({ direct: [{ address, port: 80, entry: 'x' }] })).toThrow(TypeError)
    for (const port of [0, 65536, 1.5, Number.NaN])
      expect(() => innerRuleset({ direct: [{ address: '10.0.0.1', port, entry: 'x' }] })).toThrow(TypeError)
    expect(() => hostRuleset({ table: 'filter', hostVeth: 'eth0', subnet, direct: [] })).toThrow(TypeError)
  })
})

describe('direct peers, hosts file, proxy environment', () => {
  it('routes IP literals and internal names directly, everything else through the proxy', () => {
    const d = directEntries([
      'http://10.251.8.2:8080',
      'http://agent-database-reader:8080 internal',
      'https://api.example.com',
      'https://*.example.org',
      'bad',
    ])
    expect(d.map((x) => x.text)).toEqual(['http://10.251.8.2:8080', 'http://agent-database-reader:8080 internal'])
  })
  it('writes declared names into the hosts file and the proxy variables in both cases', () => {
    const peers = [{ address: '10.251.8.2', port: 8080, entry: 'e', name: 'agent-database-reader' }]
    expect(hostsFile(peers)).toContain('10.251.8.2 agent-database-reader\n')
    const env = proxyEnv({ address: '10.250.0.1', port: 3128 }, peers)
    expect(env.HTTP_PROXY).toBe('http://10.250.0.1:3128')
    expect(env.https_proxy).toBe('http://10.250.0.1:3128')
    expect(env.NO_PROXY).toBe('localhost,127.0.0.1,agent-database-reader,10.251.8.2')
    expect(proxyEnv(undefined, [])).toEqual({})
  })
  it("keeps the host's name service switch but looks host and network names up in local files only", () => {
    const host =
      'passwd: files systemd\nhosts:          files mdns4_minimal [NOTFOUND=return] resolve dns myhostname\n  networks: files dns\nservices: db files\n'
    const out = nsswitchFile(host)
    expect(out.split('\n').filter((l) => /^\s*(hosts|networks)\s*:/.test(l))).toEqual(['hosts: files', 'networks: files'])
    expect(out).toContain('passwd: files systemd\n')
    expect(out).toContain('services: db files\n')
    expect(out).not.toMatch(/resolve|mdns|myhostname|dns/)
    expect(nsswitchFile(undefined)).toMatch(/^# agent-trust sandbox[^\n]*\nhosts: files\nnetworks: files\n$/)
  })
})

describe('NetworkPolicy export', () => {
  it('default-deny egress, internal peers by pod label, literals by ipBlock, the rest via the proxy', () => {
    const p = networkPolicy({
      agentId: 'agent-summarizer-v2',
      trustLevel: 'L1',
      egress: ['http://agent-database-reader:8080 internal', 'http://10.251.8.2:8080', 'https://api.example.com'],
      proxyPort: 3128,
    }) as { spec: { policyTypes: string[]; egress: unknown[] } }
    expect(p.spec.policyTypes).toEqual(['Egress'])
    expect(p.spec.egress).toEqual([
      {
        to: [{ podSelector: { matchLabels: { 'agent-trust.io/agent': 'agent-database-reader' } } }],
        ports: [{ protocol: 'TCP', port: 8080 }],
      },
      { to: [{ ipBlock: { cidr: '10.251.8.2/32' } }], ports: [{ protocol: 'TCP', port: 8080 }] },
      {
        to: [{ podSelector: { matchLabels: { 'agent-trust.io/role': 'egress-proxy', 'agent-trust.io/agent': 'agent-summarizer-v2' } } }],
        ports: [{ protocol: 'TCP', port: 3128 }],
      },
    ])
    const l0 = networkPolicy({ agentId: 'a', trustLevel: 'L0', egress: ['https://api.example.com'], proxyPort: 3128 }) as {
      spec: { egress: unknown[] }
    }
    expect(l0.spec.egress).toEqual([])
  })
  it('label values are always valid Kubernetes label values', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 300 }), (id) => {
        expect(labelValue(id)).toMatch(/^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)$/)
      }),
    )
  })
})

describe('preflight', () => {
  it('detects CAP_NET_ADMIN from /proc/self/status', () => {
    expect(hasNetAdmin('CapEff:\t000001ffffffffff\n')).toBe(true)
    expect(hasNetAdmin('CapEff:\t0000000000001000\n')).toBe(true)
    expect(hasNetAdmin('CapEff:\t0000000000000000\n')).toBe(false)
    expect(hasNetAdmin('')).toBe(false)
  })
  it('refuses with ERR_SANDBOX_UNAVAILABLE and a hint', () => {
    expect(() => preflight({ platform: 'darwin' })).toThrow(/needs Linux/)
    expect(() => preflight({ platform: 'linux', status: 'CapEff:\t0\n' })).toThrow(
      expect.objectContaining({ code: 'ERR_SANDBOX_UNAVAILABLE' }),
    )
  })
})
