/**
 * The kernel side of a sandbox: `ip` (iproute2) and `nft` (nftables) run as child processes,
 * never through a shell. Setup is undone in reverse on any failure; teardown and `gc` work
 * from the derived names alone, so they also clean up after a launcher that was killed.
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SandboxUnavailable } from '../errors.js'
import {
  agentTag,
  chooseSubnet,
  intToIpv4,
  ipv4ToInt,
  hostRuleset,
  hostsFile,
  nsswitchFile,
  HOST_TABLE_NAME,
  innerRuleset,
  NETNS_NAME,
  sandboxNames,
  VETH_NAME,
  type DirectPeer,
  type SandboxNames,
  type SandboxSubnet,
} from './plan.js'

/** Where each live sandbox records its launcher's pid (gc leaves sandboxes of live launchers alone). */
export const STATE_DIR = '/run/agent-trust-sandbox'
const NETNS_ETC = '/etc/netns'
const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']

export interface Tools {
  readonly ip: string
  readonly nft: string
  readonly setpriv: string
  /** util-linux nsenter, when present: enters only the network namespace (faster than `ip netns exec` for nft). */
  readonly nsenter?: string
}

function findTool(name: string): string | undefined {
  for (const d of SEARCH_PATH) if (existsSync(join(d, name))) return join(d, name)
  return undefined
}

/** Effective capabilities of this process include CAP_NET_ADMIN (bit 12)? */
export function hasNetAdmin(status: string = readStatus()): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)
  if (m === null) return false
  return (BigInt(`0x${m[1]}`) & (1n << 12n)) !== 0n
}

function readStatus(): string {
  try {
    return readFileSync('/proc/self/status', 'utf8')
  } catch {
    return ''
  }
}

/**
 * What the sandbox needs from this machine, or a SandboxUnavailable with a one-line hint.
 * `status` is `/proc/self/status` (a parameter so the detection can be tested).
 */
export function preflight(options: { platform?: string; status?: string } = {}): Tools {
  const platform = options.platform ?? process.platform
  if (platform !== 'linux') throw new SandboxUnavailable('the network sandbox needs Linux (network namespaces and nftables)')
  if (!hasNetAdmin(options.status)) {
    throw new SandboxUnavailable('the network sandbox needs root or CAP_NET_ADMIN (run it with sudo, or grant the capability)', {
      details: { rule: 'capability' },
    })
  }
  const ip = findTool('ip')
  const nft = findTool('nft')
  const setpriv = findTool('setpriv')
  const missing = [ip === undefined ? 'ip (apt-get install iproute2)' : '', nft === undefined ? 'nft (apt-get install nftables)' : '']
    .concat(setpriv === undefined ? ['setpriv (apt-get install util-linux)'] : [])
    .filter((m) => m !== '')
  if (missing.length > 0 || ip === undefined || nft === undefined || setpriv === undefined) {
    throw new SandboxUnavailable(`the network sandbox needs ${missing.join(', ')}`, { details: { rule: 'tools' } })
  }
  const nsenter = findTool('nsenter')
  return { ip, nft, setpriv, ...(nsenter === undefined ? {} : { nsenter }) }
}

/** `nft -f -` inside the namespace `netns`. */
function nftInside(tools: Tools, netns: string, rules: string): Promise<string> {
  if (tools.nsenter !== undefined) return exec(tools.nsenter, [`--net=/run/netns/${netns}`, '--', tools.nft, '-f', '-'], rules)
  return exec(tools.ip, ['netns', 'exec', netns, tools.nft, '-f', '-'], rules)
}

/** A host file's text, or undefined when it does not exist. */
function readHostFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}

/** Run a tool; resolves with stdout, rejects with a SandboxUnavailable naming the step. */
export function exec(file: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, [...args], { timeout: 10_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) return resolve(stdout)
      const first = String(stderr).trim().split('\n')[0]?.slice(0, 200) ?? ''
      reject(
        new SandboxUnavailable(`"${file.split('/').pop()} ${args.slice(0, 3).join(' ')}" failed: ${first || err.message}`, { cause: err }),
      )
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

/**
 * Every IPv4 prefix the host uses: the routes of every table, which include the connected
 * prefixes (main table) and each of the host's own addresses (local table).
 */
export async function hostPrefixes(tools: Tools): Promise<string[]> {
  const routes = JSON.parse(await exec(tools.ip, ['-j', '-4', 'route', 'show', 'table', 'all'])) as Array<{ dst?: string }>
  const out: string[] = []
  for (const r of routes) if (typeof r.dst === 'string' && r.dst !== 'default') out.push(r.dst.includes('/') ? r.dst : `${r.dst}/32`)
  return out
}

export interface NetworkPlan {
  readonly names: SandboxNames
  /** Absent for loopback-only sandboxes (L0). */
  readonly subnet?: SandboxSubnet
  readonly direct: readonly DirectPeer[]
  /** Ports other agents' sandboxes that declared this agent may connect to. */
  readonly inbound?: readonly number[]
  /** The agent, recorded in the host table (see agentTag) so sandboxes that declared it find its address. */
  readonly agent?: string
}

/**
 * Create the namespace (loopback only) and, unless L0, the veth pair with its addresses and
 * the default route inside: one `ip -batch` on each side. No process runs in the namespace
 * until {@link applyRules} has put both rulesets in place (the launcher spawns only after
 * `startSandbox` returns), so the short window without rules has no one to use it.
 */
export async function createNetwork(
  tools: Tools,
  plan: NetworkPlan,
  options: { launcherPid?: number; alongside?: () => Promise<unknown> } = {},
): Promise<void> {
  const launcherPid = options.launcherPid ?? process.pid
  const { names, subnet, direct } = plan
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 })
  writeFileSync(join(STATE_DIR, `${names.key}.pid`), `${launcherPid}\n`)
  const etc = join(NETNS_ETC, names.netns)
  mkdirSync(etc, { recursive: true })
  writeFileSync(join(etc, 'hosts'), hostsFile(direct))
  // No name server inside: DNS is an exfiltration channel. Declared names are in hosts.
  writeFileSync(join(etc, 'resolv.conf'), '# agent-trust sandbox: no DNS inside; declared names are in /etc/hosts\n')
  writeFileSync(join(etc, 'nsswitch.conf'), nsswitchFile(readHostFile('/etc/nsswitch.conf')))
  // Every name and address below is derived (hex key, IPv4 integers): nothing else reaches the batch.
  const host = [`netns add ${names.netns}`]
  const inside = ['link set lo up']
  if (subnet !== undefined) {
    host.push(
      `link add ${names.hostVeth} type veth peer name ${names.sandboxVeth} netns ${names.netns}`,
      `addr add ${subnet.hostIp}/30 dev ${names.hostVeth}`,
      `link set ${names.hostVeth} up`,
    )
    inside.push(
      `addr add ${subnet.sandboxIp}/30 dev ${names.sandboxVeth}`,
      `link set ${names.sandboxVeth} up`,
      `route add default via ${subnet.hostIp}`,
    )
  }
  await exec(tools.ip, ['-batch', '-'], `${host.join('\n')}\n`)
  // The host side is ready (the proxy may listen on its address) while the inside is set up.
  const steps = await Promise.allSettled([
    exec(tools.ip, ['-n', names.netns, '-batch', '-'], `${inside.join('\n')}\n`),
    options.alongside?.() ?? Promise.resolve(),
  ])
  for (const r of steps) if (r.status === 'rejected') throw r.reason
}

/** Apply both rulesets (each one atomic `nft -f` transaction, the two at once) for the proxy port and the direct peers. */
export async function applyRules(tools: Tools, plan: NetworkPlan, proxyPort: number | undefined): Promise<void> {
  const { names, subnet, direct } = plan
  const proxy = subnet === undefined || proxyPort === undefined ? undefined : { address: subnet.hostIp, port: proxyPort }
  const p = proxy === undefined ? {} : { proxy }
  const inbound = subnet === undefined || proxy === undefined ? [] : (plan.inbound ?? [])
  const innerIn = inbound.length === 0 || subnet === undefined ? {} : { inbound: { address: subnet.sandboxIp, ports: inbound } }
  const steps = [nftInside(tools, names.netns, innerRuleset({ ...p, direct, ...innerIn }))]
  if (subnet !== undefined)
    steps.push(
      exec(
        tools.nft,
        ['-f', '-'],
        hostRuleset({
          table: names.hostTable,
          hostVeth: names.hostVeth,
          subnet,
          ...p,
          direct,
          inbound,
          ...(plan.agent === undefined ? {} : { agentTag: agentTag(plan.agent) }),
        }),
      ),
    )
  const results = await Promise.allSettled(steps)
  for (const r of results) if (r.status === 'rejected') throw r.reason
  if (subnet !== undefined && direct.length > 0) writeFileSync('/proc/sys/net/ipv4/ip_forward', '1\n')
}

/** Choose the subnet for a new sandbox (the host's routes checked now). */
export async function planNetwork(
  tools: Tools,
  key: string,
  range: string,
  l0: boolean,
  direct: readonly DirectPeer[],
  peer: { agent?: string; inbound?: readonly number[] } = {},
): Promise<NetworkPlan> {
  const names = sandboxNames(key)
  if (l0) return { names, direct: [] }
  const subnet = chooseSubnet(range, key, await hostPrefixes(tools))
  if (subnet === undefined)
    throw new SandboxUnavailable(`no free /30 subnet left in ${range} (set another range)`, { details: { rule: 'subnet' } })
  return { names, subnet, direct, ...peer }
}

function quiet(file: string, args: readonly string[]): void {
  try {
    execFileSync(file, [...args], { stdio: 'ignore', timeout: 10_000 })
  } catch {
    // already gone
  }
}

/** Kill what still runs in the namespace, then remove every object of `key`. Synchronous: also used at process exit. */
export function destroyNetwork(tools: Pick<Tools, 'ip' | 'nft'>, key: string): void {
  const names = sandboxNames(key)
  let pids: string[] = []
  try {
    pids = execFileSync(tools.ip, ['netns', 'pids', names.netns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((p) => /^\d+$/.test(p))
  } catch {
    // no namespace
  }
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL')
    } catch {
      // gone
    }
  }
  quiet(tools.ip, ['link', 'del', names.hostVeth])
  quiet(tools.ip, ['netns', 'del', names.netns])
  quiet(tools.nft, ['delete', 'table', 'inet', names.hostTable])
  rmSync(join(NETNS_ETC, names.netns), { recursive: true, force: true })
  rmSync(join(STATE_DIR, `${key}.pid`), { force: true })
}

/**
 * Sandbox addresses of the live sandboxes of `agentId` (for the agents that declared it
 * `internal`). Read from the host namespace only, which a command inside cannot change: the
 * agent's tag chain in a sandbox's host table, and that sandbox's host-side veth address.
 */
export async function liveSandboxAddresses(tools: Pick<Tools, 'ip' | 'nft'>, agentId: string): Promise<string[]> {
  const tag = agentTag(agentId)
  let chains: Array<{ chain?: { family?: string; table?: string; name?: string } }>
  try {
    chains = (JSON.parse(await exec(tools.nft, ['-j', 'list', 'chains', 'inet'])) as { nftables?: typeof chains }).nftables ?? []
  } catch {
    return []
  }
  const out: string[] = []
  for (const c of chains) {
    const m = HOST_TABLE_NAME.exec(c.chain?.table ?? '')
    if (m === null || c.chain?.name !== tag) continue
    const key = m[1] as string
    if (liveLauncher(key) === undefined) continue
    try {
      const link = JSON.parse(await exec(tools.ip, ['-j', '-4', 'addr', 'show', 'dev', sandboxNames(key).hostVeth])) as Array<{
        addr_info?: Array<{ local?: string; prefixlen?: number }>
      }>
      const local = link[0]?.addr_info?.find((i) => i.prefixlen === 30)?.local
      const n = local === undefined ? undefined : ipv4ToInt(local)
      if (n !== undefined) out.push(intToIpv4(n + 1))
    } catch {
      // being removed
    }
  }
  return out
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Keys of every sandbox object on this host (namespaces, veths, host tables, state files). */
export function listSandboxKeys(tools: Pick<Tools, 'ip' | 'nft'>): string[] {
  const keys = new Set<string>()
  try {
    for (const line of execFileSync(tools.ip, ['netns', 'list'], { encoding: 'utf8' }).split('\n')) {
      const m = NETNS_NAME.exec(line.split(' ')[0] ?? '')
      if (m !== null) keys.add(m[1] as string)
    }
    const links = JSON.parse(execFileSync(tools.ip, ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname?: string }>
    for (const l of links) {
      const m = VETH_NAME.exec(l.ifname ?? '')
      if (m !== null) keys.add(m[1] as string)
    }
    const tables = JSON.parse(execFileSync(tools.nft, ['-j', 'list', 'tables'], { encoding: 'utf8' })) as {
      nftables?: Array<{ table?: { family?: string; name?: string } }>
    }
    for (const t of tables.nftables ?? []) {
      const m = HOST_TABLE_NAME.exec(t.table?.name ?? '')
      if (m !== null && t.table?.family === 'inet') keys.add(m[1] as string)
    }
  } catch {
    // a tool failed: report what was found
  }
  for (const dir of [STATE_DIR]) {
    try {
      for (const f of readdirSync(dir)) {
        const m = /^([0-9a-f]{8})\.pid$/.exec(f)
        if (m !== null) keys.add(m[1] as string)
      }
    } catch {
      // no state dir
    }
  }
  try {
    for (const f of readdirSync(NETNS_ETC)) {
      const m = NETNS_NAME.exec(f)
      if (m !== null) keys.add(m[1] as string)
    }
  } catch {
    // no /etc/netns
  }
  return [...keys].sort()
}

/** The launcher pid recorded for `key`, if its process still runs. */
export function liveLauncher(key: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(STATE_DIR, `${key}.pid`), 'utf8').trim())
    return Number.isSafeInteger(pid) && pid > 0 && alive(pid) ? pid : undefined
  } catch {
    return undefined
  }
}

/** Remove every sandbox whose launcher is gone (or every one with `all`). Returns the keys removed. */
export function gcSandboxes(tools: Pick<Tools, 'ip' | 'nft'>, options: { all?: boolean } = {}): { removed: string[]; kept: string[] } {
  const removed: string[] = []
  const kept: string[] = []
  for (const key of listSandboxKeys(tools)) {
    if (options.all !== true && liveLauncher(key) !== undefined) {
      kept.push(key)
      continue
    }
    destroyNetwork(tools, key)
    removed.push(key)
  }
  return { removed, kept }
}
