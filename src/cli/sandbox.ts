/** `agent-trust sandbox run|gc|export`: run an agent's command in a network namespace built from its manifest entry. */
import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { createAuditLog, DEFAULT_AUDIT_FILE, fileSink } from '../audit/index.js'
import type { AgentDeclaration } from '../config/manifest.js'
import { loadManifest } from './shared.js'
import { EXIT, Failed, quote, str, UsageError, type CommandGroup, type Context, type ExitCode } from './run.js'

// Loaded when a sandbox command runs: the other commands work without its peer (ipaddr.js).
const sandboxModule = () => import('../sandbox/entry.js')

function agentOf(ctx: Context): AgentDeclaration {
  const id = str(ctx.values, 'agent')
  if (id === undefined) throw new UsageError('--agent <id> is required')
  const manifest = loadManifest(ctx)
  const agent = manifest.agents.find((a) => a.id === id)
  if (agent === undefined) throw new Failed(`agent ${quote(id)} is not in the manifest`, EXIT.invalid, 'ERR_AGENT_UNKNOWN')
  return agent
}

/** The command as the kernel will find it (PATH search like execvp), or undefined. */
export function findCommand(command: string, path: string | undefined): string | undefined {
  const ok = (p: string): boolean => {
    try {
      accessSync(p, constants.X_OK)
      return statSync(p).isFile()
    } catch {
      return false
    }
  }
  if (command.includes('/')) return ok(command) ? command : undefined
  for (const dir of (path ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    if (dir !== '' && ok(join(dir, command))) return join(dir, command)
  }
  return undefined
}

async function run(ctx: Context): Promise<ExitCode> {
  const [command, ...args] = ctx.positionals as string[]
  if (command === undefined) throw new UsageError('give the command after --: agent-trust sandbox run --agent <id> -- <command> [args...]')
  const manifest = loadManifest(ctx)
  const agent = agentOf(ctx)
  if (findCommand(command, ctx.io.env.PATH) === undefined)
    throw new Failed(`the command ${quote(command, 128)} was not found or is not executable`, EXIT.invalid, 'ERR_FILE_UNREADABLE')
  const userText = str(ctx.values, 'user')
  const um = userText === undefined ? null : /^(\d{1,10})(?::(\d{1,10}))?$/.exec(userText)
  if (userText !== undefined && um === null) throw new UsageError('--user takes <uid>[:<gid>] (numbers)')
  const user = um === null ? {} : { uid: Number(um[1]), gid: Number(um[2] ?? um[1]) }
  const file = str(ctx.values, 'audit-file') ?? ctx.io.env.AGENT_TRUST_AUDIT_FILE ?? DEFAULT_AUDIT_FILE
  const audit = createAuditLog({ sinks: [fileSink(file)] })
  try {
    const range = str(ctx.values, 'subnet-range')
    const sandbox = await (
      await sandboxModule()
    ).startSandbox({ agent: agent.id, manifest, audit, ...(range === undefined ? {} : { subnetRange: range }) })
    try {
      const child = sandbox.spawn(command, args, { stdio: 'inherit', env: { ...ctx.io.env } as NodeJS.ProcessEnv, ...user })
      const onAbort = (): void => {
        child.kill('SIGTERM')
        setTimeout(() => child.kill('SIGKILL'), 2000).unref()
      }
      ctx.io.signal?.addEventListener('abort', onAbort, { once: true })
      const code = await new Promise<number>((resolve) => {
        child.once('error', () => resolve(127))
        child.once('exit', (c, signal) => resolve(c ?? 128 + signalNumber(signal)))
      })
      ctx.io.signal?.removeEventListener('abort', onAbort)
      // The command's own code is run's code (shell convention: 128+N when killed by signal N).
      return code as ExitCode
    } finally {
      await sandbox.close()
    }
  } finally {
    await audit.close()
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const n: Partial<Record<NodeJS.Signals, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGTERM: 15,
    SIGSEGV: 11,
    SIGABRT: 6,
    SIGPIPE: 13,
  }
  return (signal === null ? undefined : n[signal]) ?? 0
}

async function gc(ctx: Context): Promise<ExitCode> {
  const r = (await sandboxModule()).gcSandbox({ all: ctx.values.all === true })
  ctx.print(
    r,
    `removed ${r.removed.length} sandbox(es)${r.removed.length ? `: ${r.removed.join(', ')}` : ''}${r.kept.length ? `; kept ${r.kept.length} of live launchers` : ''}`,
  )
  return EXIT.ok
}

async function exportRules(ctx: Context): Promise<ExitCode> {
  const agent = agentOf(ctx)
  const format = str(ctx.values, 'format') ?? 'nft'
  const portText = str(ctx.values, 'proxy-port') ?? '3128'
  const port = Number(portText)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('--proxy-port takes 1-65535')
  if (format === 'nft') {
    const address = str(ctx.values, 'proxy-address') ?? '10.250.0.1'
    const l0 = agent.trustLevel === 'L0'
    const sandboxing = await sandboxModule()
    const direct = l0 ? [] : await sandboxing.resolveDirect(agent)
    // Ports other agents declared for this one (by its id, internal), at the sandbox's own address.
    const ports = l0 ? [] : sandboxing.inboundPorts(loadManifest(ctx).agents, agent.id)
    const sandboxAddress = str(ctx.values, 'sandbox-address') ?? '10.250.0.2'
    const rules = sandboxing.innerRuleset({
      ...(l0 ? {} : { proxy: { address, port } }),
      direct,
      ...(ports.length === 0 ? {} : { inbound: { address: sandboxAddress, ports } }),
    })
    ctx.io.out(
      `# agent-trust sandbox ruleset for agent ${JSON.stringify(agent.id)} (${agent.trustLevel}); apply inside its network namespace: nft -f <file>\n${rules}`,
    )
    return EXIT.ok
  }
  if (format === 'k8s') {
    const ns = str(ctx.values, 'namespace')
    ctx.io.out(`${JSON.stringify((await sandboxModule()).networkPolicyFor(agent, port, ns), null, 2)}\n`)
    return EXIT.ok
  }
  throw new UsageError('--format takes nft or k8s')
}

export const sandboxCommands: CommandGroup = {
  name: 'sandbox',
  summary: 'run an agent in a network namespace where only its declared destinations are reachable (Linux, root)',
  subcommands: [
    {
      name: 'run',
      summary: 'run a command as an agent, network-isolated',
      args: [1, 4096],
      options: {
        agent: { type: 'string' },
        'audit-file': { type: 'string' },
        'subnet-range': { type: 'string' },
        user: { type: 'string' },
      },
      help: `Usage: agent-trust sandbox run --agent <id> [--manifest <file>] [--audit-file <file>] [--user <uid>[:<gid>]] -- <command> [args...]

Runs the command in a network namespace of its own, without capabilities. Every packet out is
dropped (IPv4 and IPv6, TCP, UDP, ICMP; no DNS) except TCP to the agent's declared IP-literal
and "internal" destinations and to an HTTP proxy that enforces the agent's egress list (the
command gets HTTP_PROXY/HTTPS_PROXY/NO_PROXY). An L0 agent gets loopback only. Every proxy
decision goes to the audit trail. Everything is removed when the command exits.

Options:
  --agent <id>            the agent (its manifest entry decides)
  --audit-file <file>     the audit trail (default: AGENT_TRUST_AUDIT_FILE, else ${DEFAULT_AUDIT_FILE})
  --subnet-range <cidr>   IPv4 range for the per-sandbox /30 (default 10.250.0.0/16)
  --user <uid>[:<gid>]    run the command as this user (recommended; gid defaults to uid)

Exit: the command's exit code (128+N if killed by signal N); 3 when the sandbox cannot be set
up (not Linux, not root / no CAP_NET_ADMIN, nft or ip missing); 4 for an unknown agent, a
manifest error or a command that is not found.`,
      run,
    },
    {
      name: 'gc',
      summary: 'remove sandboxes left by killed launchers',
      options: { all: { type: 'boolean' } },
      help: `Usage: agent-trust sandbox gc [--all]

Removes the namespaces, veths, nft tables and files of sandboxes whose launcher is gone. Only
objects with the sandbox's derived names (atsb-<8 hex>, atsb<8 hex>h/c, inet atsb_<8 hex>)
are touched. --all removes live sandboxes too.`,
      run: gc,
    },
    {
      name: 'export',
      summary: 'print the nftables ruleset or a Kubernetes NetworkPolicy for an agent',
      options: {
        agent: { type: 'string' },
        format: { type: 'string' },
        'proxy-address': { type: 'string' },
        'proxy-port': { type: 'string' },
        'sandbox-address': { type: 'string' },
        namespace: { type: 'string' },
      },
      help: `Usage: agent-trust sandbox export --agent <id> --format nft|k8s [options]

nft: the ruleset applied inside the agent's namespace (nft -f), with the proxy at
     --proxy-address (default 10.250.0.1) and --proxy-port (default 3128); the ports other
     agents declare for this one (http://<id>:<port> internal) are open at --sandbox-address
     (default 10.250.0.2).
k8s: a networking.k8s.io/v1 NetworkPolicy (JSON; kubectl apply -f accepts it): default-deny
     egress for pods labelled agent-trust.io/agent=<id>, allowing the declared internal peers'
     pods (labelled with the declared name), declared IP literals, and the egress proxy
     the agent's own egress proxy (pods labelled agent-trust.io/role=egress-proxy and
     agent-trust.io/agent=<id>, --proxy-port) for everything else.
     --namespace <ns> sets metadata.namespace.`,
      run: exportRules,
    },
  ],
}
