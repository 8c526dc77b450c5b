/**
 * Network isolation from the manifest (Linux): each agent process in a network namespace of
 * its own, where only the agent's declared destinations are reachable.
 *
 * - a veth pair to the host on a per-sandbox /30 (checked against the host's routes);
 * - nftables rulesets inside and on the host side, each applied atomically, that drop every
 *   packet (IPv4 and IPv6, TCP, UDP, ICMP) except TCP to the egress proxy and to the
 *   declared direct peers (IP literals and `internal` names, resolved once at start and
 *   written into the namespace's own hosts file); no DNS server is reachable inside;
 * - an HTTP forward proxy on the host side of the veth that decides every request with the
 *   in-process guard's own policy and audits every decision;
 * - an L0 agent gets loopback only;
 * - sandboxes cannot reach each other, except where one agent declares another by its id as an
 *   `internal` destination (`http://agent-a:7000 internal`): that name resolves to the live
 *   sandbox of `agent-a`, whose sandbox accepts connections on port 7000 from other sandboxes.
 *
 * Subpath: `agent-trust/sandbox`.
 *
 * @example
 * ```ts
 * const sandbox = await startSandbox({ agent: 'agent-summarizer-v2', manifest, audit })
 * const child = sandbox.spawn('node', ['summarize.js'], { stdio: 'inherit' })
 * child.on('exit', () => void sandbox.close())
 * ```
 *
 * @module agent-trust/sandbox
 */
import { spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { lookup } from 'node:dns/promises'
import { z } from 'zod'
import type { AuditLog } from '../audit/types.js'
import { discardAudit } from '../audit/types.js'
import type { AgentDeclaration, Manifest } from '../config/manifest.js'
import { AgentUnknown, ConfigInvalid, SandboxUnavailable } from '../errors.js'
import { EgressPolicy } from '../egress/policy.js'
import { fn, parseOptions, withMethods } from '../lib/options.js'
import {
  DEFAULT_SUBNET_RANGE,
  directEntries,
  inboundPorts,
  networkPolicy,
  proxyEnv,
  type DirectPeer,
  type SandboxNames,
  type SandboxSubnet,
} from './plan.js'
import { startEgressProxy, type EgressProxy, type ProxyResolver } from './proxy.js'
import {
  applyRules,
  createNetwork,
  destroyNetwork,
  gcSandboxes,
  liveSandboxAddresses,
  planNetwork,
  preflight,
  type Tools,
} from './system.js'
import { sandboxLifecycle } from '../audit/events.js'

export interface SandboxOptions {
  /** The agent id (its manifest entry gives the trust level and the egress list). */
  readonly agent: string
  readonly manifest: Manifest
  /** Where proxy decisions go (use `createAuditLog` for the hash-chained trail). */
  readonly audit?: AuditLog
  /** IPv4 range the sandbox's /30 is taken from. Default 10.250.0.0/16. */
  readonly subnetRange?: string
  /** Name resolution for the proxy and for internal names at start (default: the system resolver). */
  readonly resolver?: ProxyResolver
}

export interface Sandbox {
  readonly agent: string
  readonly names: SandboxNames
  /** Absent for a loopback-only (L0) sandbox. */
  readonly subnet?: SandboxSubnet
  /** The proxy (`http://address:port`), absent for L0. */
  readonly proxy?: { readonly address: string; readonly port: number }
  /** The environment every spawned command gets (proxy variables, AGENT_TRUST_AGENT_ID). */
  readonly env: Readonly<Record<string, string>>
  /**
   * Run a command inside the namespace, without capabilities (it cannot change its own network).
   * `uid`/`gid` in the options run the command as that user (recommended: uid 0 without
   * capabilities still owns root's files).
   */
  spawn(command: string, args?: readonly string[], options?: SpawnOptions): ChildProcess
  /**
   * The argv that runs `command` inside, without capabilities, for launchers that spawn
   * processes themselves (an MCP SDK stdio transport); give them {@link env} too.
   * `setpriv` takes extra setpriv options (`--reuid=<uid>`, `--regid=<gid>`, `--clear-groups`).
   */
  command(command: string, args?: readonly string[], setpriv?: readonly string[]): { command: string; args: string[] }
  /** Kill what still runs inside, stop the proxy, remove namespace, veth and tables. Idempotent. */
  close(): Promise<void>
}

const OptionsSchema = z.strictObject({
  agent: z.string().min(1).max(255),
  manifest: z.custom<Manifest>((v) => typeof v === 'object' && v !== null && Array.isArray((v as Manifest).agents), {
    message: 'must be a parsed manifest (parseManifest / loadManifestFile)',
  }),
  audit: withMethods<AuditLog>('record').optional(),
  subnetRange: z.string().max(18).optional(),
  resolver: fn<ProxyResolver>().optional(),
})

const systemResolver: ProxyResolver = (h) => lookup(h, { all: true, verbatim: true })

/** Resolve the direct peers once, each address checked by the guard's address rules. */
export async function resolveDirect(agent: AgentDeclaration, resolver: ProxyResolver = systemResolver): Promise<DirectPeer[]> {
  const policy = new EgressPolicy({ egress: agent.egress, trustLevel: agent.trustLevel === 'L0' ? 'L1' : agent.trustLevel })
  const out: DirectPeer[] = []
  for (const d of directEntries(agent.egress)) {
    if (d.kind === 'ipv4') {
      out.push({ address: d.host, port: d.port, entry: d.text })
      continue
    }
    const allowance = policy.decideConnect(`${d.scheme}:`, d.host, d.port)
    if (!allowance.allowed) continue
    let addresses: string[]
    try {
      addresses = (await resolver(d.host)).map((a) => String(a.address))
    } catch {
      throw new SandboxUnavailable(`the internal destination ${d.text} does not resolve (it is resolved once, at start)`, {
        details: { rule: 'resolve-failed' },
      })
    }
    const v = policy.decideAddresses(allowance, addresses)
    if (!v.allowed)
      throw new ConfigInvalid(`the internal destination ${d.text} resolves to an address refused by the egress rules (${v.reason})`)
    for (const a of addresses) if (!a.includes(':')) out.push({ address: a, port: d.port, entry: d.text, name: d.host })
  }
  return out
}

/**
 * Start a sandbox for one agent of the manifest. Throws AgentUnknown (unknown agent),
 * ConfigInvalid (bad options or egress) or SandboxUnavailable (not Linux, not root, tools
 * missing, a kernel step refused); a failed start leaves nothing behind.
 */
export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const o = parseOptions('startSandbox', OptionsSchema, options)
  const agent = o.manifest.agents.find((a) => a.id === o.agent)
  if (agent === undefined) throw new AgentUnknown(`agent "${o.agent.slice(0, 64)}" is not in the manifest`, { details: { rule: 'agent' } })
  const tools: Tools = preflight()
  const audit = o.audit ?? discardAudit
  const resolver = o.resolver ?? systemResolver
  const l0 = agent.trustLevel === 'L0'
  // An internal name that is another agent's id resolves to that agent's live sandboxes first.
  const peers: ProxyResolver = async (h) => {
    const live = await liveSandboxAddresses(tools, h)
    return live.length > 0 ? live.map((address) => ({ address })) : resolver(h)
  }
  const direct = l0 ? [] : await resolveDirect(agent, peers)
  const key = randomBytes(4).toString('hex')
  const plan = await planNetwork(tools, key, o.subnetRange ?? DEFAULT_SUBNET_RANGE, l0, direct, {
    agent: agent.id,
    inbound: inboundPorts(o.manifest.agents, agent.id),
  })
  let proxy: EgressProxy | undefined
  const atExit = (): void => destroyNetwork(tools, key)
  process.on('exit', atExit)
  try {
    const subnet = plan.subnet
    // Once the host side exists: the proxy listens on it, then both rulesets go in (they match
    // interfaces by name), while the inside is set up. Nothing runs inside before all of it.
    await createNetwork(tools, plan, {
      alongside: async () => {
        if (subnet !== undefined)
          proxy = await startEgressProxy({
            agentId: agent.id,
            egress: agent.egress,
            trustLevel: agent.trustLevel,
            audit,
            host: subnet.hostIp,
            resolver,
          })
        await applyRules(tools, plan, proxy?.port)
      },
    })
  } catch (e) {
    await proxy?.close()
    destroyNetwork(tools, key)
    process.off('exit', atExit)
    throw e
  }
  audit.record(
    sandboxLifecycle(
      agent,
      'start',
      `netns=${plan.names.netns}${plan.subnet === undefined ? ' loopback-only' : ` subnet=${plan.subnet.cidr}`} direct=${direct.length}`,
    ),
  )
  const p = proxy === undefined ? undefined : { address: proxy.address, port: proxy.port }
  const env = { ...proxyEnv(p, direct), AGENT_TRUST_AGENT_ID: agent.id }
  let closed: Promise<void> | undefined
  const argvOf = (command: string, args: readonly string[], setpriv: readonly string[]) => ({
    command: tools.ip,
    args: [
      'netns',
      'exec',
      plan.names.netns,
      tools.setpriv,
      ...setpriv,
      '--bounding-set=-all',
      '--inh-caps=-all',
      '--ambient-caps=-all',
      '--no-new-privs',
      '--',
      command,
      ...args,
    ],
  })
  return {
    agent: agent.id,
    names: plan.names,
    ...(plan.subnet === undefined ? {} : { subnet: plan.subnet }),
    ...(p === undefined ? {} : { proxy: p }),
    env,
    spawn(command, args = [], spawnOptions = {}) {
      if (closed !== undefined) throw new SandboxUnavailable('the sandbox is closed')
      const { uid, gid, ...rest } = spawnOptions
      const ids = [uid, gid].filter((v) => v !== undefined)
      if (ids.some((v) => !Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > 0xfffffffe))
        throw new ConfigInvalid('uid and gid must be integers 0-4294967294')
      // uid/gid apply to the command (setpriv switches after entering the namespace), not to `ip`.
      const who = [
        ...(uid === undefined ? [] : [`--reuid=${uid}`]),
        ...(gid === undefined ? [] : [`--regid=${gid}`]),
        ...(uid === undefined && gid === undefined ? [] : ['--clear-groups']),
      ]
      const base = rest.env ?? process.env
      const argv = argvOf(command, args, who)
      return spawnChild(argv.command, argv.args, { ...rest, env: { ...base, ...env } })
    },
    command(command, args = [], setpriv = []) {
      if (closed !== undefined) throw new SandboxUnavailable('the sandbox is closed')
      // Only user switches: nothing that could give capabilities back.
      if (!setpriv.every((o) => /^--(?:reuid|regid)=\d{1,10}$|^--clear-groups$/.test(o)))
        throw new ConfigInvalid('setpriv options may only be --reuid=<uid>, --regid=<gid> and --clear-groups')
      return argvOf(command, args, setpriv)
    },
    close() {
      closed ??= (async () => {
        await proxy?.close()
        destroyNetwork(tools, key)
        process.off('exit', atExit)
        audit.record(sandboxLifecycle(agent, 'stop', `netns=${plan.names.netns}`))
      })()
      return closed
    },
  }
}

/** Remove sandboxes left by launchers that were killed (`all`: every sandbox, live ones too). */
export function gcSandbox(options: { all?: boolean } = {}): { removed: string[]; kept: string[] } {
  return gcSandboxes(preflight(), options)
}

export { preflight, hasNetAdmin } from './system.js'
export { chooseSubnet, hostRuleset, inboundPorts, innerRuleset, networkPolicy, sandboxNames, DEFAULT_SUBNET_RANGE } from './plan.js'

/** The Kubernetes NetworkPolicy of one manifest agent (see {@link networkPolicy}). */
export function networkPolicyFor(agent: AgentDeclaration, proxyPort = 3128, namespace?: string): Record<string, unknown> {
  return networkPolicy({
    agentId: agent.id,
    trustLevel: agent.trustLevel,
    egress: agent.egress,
    proxyPort,
    ...(namespace === undefined ? {} : { namespace }),
  })
}
export type { DirectPeer, HostRulesetInput, InnerRulesetInput, NetworkPolicyInput, SandboxNames, SandboxSubnet } from './plan.js'
export { startEgressProxy } from './proxy.js'
export type { EgressProxy, EgressProxyOptions, ProxyResolver } from './proxy.js'
