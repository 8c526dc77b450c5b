/**
 * Test hosts in network namespaces of their own, on private test subnets of this machine
 * (10.251.N.0/24: host side .1, test host .2). Each runs a small Node server that answers
 * HTTP on the given TCP ports, listens on UDP ports, and records every connection and
 * datagram; an nft counter in its namespace counts every IP packet that arrives.
 * Nothing here ever sends to an address outside this machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'

export interface TestHost {
  readonly netns: string
  readonly address: string
  /** Connections and datagrams the server saw (tcp:<port> / udp:<port>). */
  events(): Promise<string[]>
  /** IP packets that reached the host's namespace (nft counter). */
  packets(): number
  close(): void
}

const SERVER = `
const http = require('node:http'), dgram = require('node:dgram')
const events = []
const [tcp, udp] = [process.argv[1].split(',').filter(Boolean).map(Number), process.argv[2].split(',').filter(Boolean).map(Number)]
for (const p of tcp) {
  const s = http.createServer((req, res) => { if (req.url === '/__events') { res.end(JSON.stringify(events)); return } res.end('hello from ' + process.argv[3] + ' ' + req.method + ' ' + req.url) })
  s.on('connection', (c) => { if (c.remoteAddress !== '127.0.0.1') events.push('tcp:' + p + ':' + c.remoteAddress) })
  s.listen(p, '0.0.0.0')
}
for (const p of udp) { const u = dgram.createSocket('udp4'); u.on('message', (m, r) => events.push('udp:' + p + ':' + r.address)); u.bind(p, '0.0.0.0') }
setInterval(() => {}, 1e6)
process.stdout.write('ready\\n')
`

function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) })
}

/** Start a test host at 10.251.<n>.2 with HTTP on `tcp` ports and UDP listeners on `udp` ports. */
export async function startTestHost(n: number, name: string, tcp: number[], udp: number[] = []): Promise<TestHost> {
  const key = randomBytes(3).toString('hex')
  const netns = `attest-${key}`
  const hv = `att${key}h`
  const cv = `att${key}c`
  const address = `10.251.${n}.2`
  sh('ip', ['netns', 'add', netns])
  sh('ip', ['link', 'add', hv, 'type', 'veth', 'peer', 'name', cv, 'netns', netns])
  sh('ip', ['addr', 'add', `10.251.${n}.1/24`, 'dev', hv])
  sh('ip', ['link', 'set', hv, 'up'])
  sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up'])
  sh('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1'])
  sh('ip', ['-n', netns, 'addr', 'add', `${address}/24`, 'dev', cv])
  sh('ip', ['-n', netns, 'link', 'set', cv, 'up'])
  sh('ip', ['-n', netns, 'route', 'add', 'default', 'via', `10.251.${n}.1`])
  sh(
    'ip',
    ['netns', 'exec', netns, 'nft', '-f', '-'],
    'table inet rec { chain input { type filter hook input priority -300; iifname != "lo" counter; }; }\n',
  )
  const child: ChildProcess = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', SERVER, tcp.join(','), udp.join(','), name], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve())
    child.once('exit', () => reject(new Error('test host exited')))
  })
  return {
    netns,
    address,
    async events() {
      if (tcp.length === 0) return []
      const out = sh('ip', ['netns', 'exec', netns, 'curl', '-s', '--noproxy', '*', `http://127.0.0.1:${tcp[0]}/__events`])
      return JSON.parse(out) as string[]
    },
    packets() {
      const j = JSON.parse(sh('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'table', 'inet', 'rec'])) as {
        nftables: Array<{ rule?: { expr: Array<{ counter?: { packets: number } }> } }>
      }
      let total = 0
      for (const i of j.nftables) for (const e of i.rule?.expr ?? []) total += e.counter?.packets ?? 0
      return total
    },
    close() {
      child.kill('SIGKILL')
      try {
        sh('ip', ['link', 'del', hv])
      } catch {
        // gone with the namespace
      }
      try {
        sh('ip', ['netns', 'del', netns])
      } catch {
        // gone
      }
    },
  }
}

/** Namespaces, links and nft tables of this machine, for before/after comparisons. */
export function kernelObjects(): string[] {
  const ns = sh('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((l): l is string => l !== undefined && l.startsWith('atsb-'))
  const links = (JSON.parse(sh('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>)
    .map((l) => l.ifname)
    .filter((n) => n.startsWith('atsb'))
  const tables = sh('nft', ['list', 'tables'])
    .split('\n')
    .filter((l) => l.includes('atsb_'))
  return [...ns.map((n) => `netns ${n}`), ...links.map((l) => `link ${l}`), ...tables]
}
