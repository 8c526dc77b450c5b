/**
 * Test hosts in network namespaces of their own, on private test subnets of this machine
 * (10.251.N.0/24: host side .1, test host .2). Each runs a small Node server that answers
 * HTTP on the given TCP ports, listens on UDP ports, and records every connection and
 * datagram; an nft counter in its namespace counts every IP packet that arrives.
 * Nothing here ever sends to an address outside this machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

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
const http = require('node:http'), https = require('node:https'), dgram = require('node:dgram')
const events = []
const list = (i) => (process.argv[i] ?? '').split(',').filter(Boolean).map(Number)
const [tcp, udp, tlsPorts] = [list(1), list(2), list(4)]
const handler = (req, res) => {
  if (req.url === '/__events') { res.end(JSON.stringify(events)); return }
  if (req.url.startsWith('/redirect?to=')) { res.writeHead(302, { location: decodeURIComponent(req.url.slice(13)) }); res.end(); return }
  res.end('hello from ' + process.argv[3] + ' ' + req.method + ' ' + req.url)
}
const serve = (p, s) => {
  s.on('connection', (c) => { if (c.remoteAddress !== '127.0.0.1') events.push('tcp:' + p + ':' + c.remoteAddress) })
  s.listen(p, '0.0.0.0')
}
for (const p of tcp) serve(p, http.createServer(handler))
for (const p of tlsPorts) serve(p, https.createServer({ key: process.env.ATTEST_TLS_KEY, cert: process.env.ATTEST_TLS_CERT }, handler))
for (const p of udp) { const u = dgram.createSocket('udp4'); u.on('message', (m, r) => events.push('udp:' + p + ':' + r.address)); u.bind(p, '0.0.0.0') }
setInterval(() => {}, 1e6)
process.stdout.write('ready\\n')
`

function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], ...(input === undefined ? {} : { input }) })
}

/** A server certificate and key (PEM) for the test hosts' HTTPS ports. */
export interface TestTls {
  readonly ports: readonly number[]
  readonly key: string
  readonly cert: string
}

/**
 * A throwaway test CA (P-256, one day) and a server certificate signed by it for the given
 * IP addresses (subjectAltName IP entries, RFC 5280 section 4.2.1.6), made with openssl in `dir`.
 */
export function makeTestCa(dir: string, ips: readonly string[]): { caFile: string; key: string; cert: string } {
  const f = (n: string) => join(dir, n)
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  sh('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=agent-trust test CA'])
  sh('openssl', ['req', ...ec, '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', `/CN=${ips[0] ?? 'test'}`])
  writeFileSync(f('srv.ext'), `subjectAltName=${ips.map((i) => `IP:${i}`).join(',')}\nextendedKeyUsage=serverAuth\n`)
  sh(
    'openssl',
    ['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.pem')].concat([
      '-days',
      '1',
      '-extfile',
      f('srv.ext'),
    ]),
  )
  return { caFile: f('ca.pem'), key: readFileSync(f('srv.key'), 'utf8'), cert: readFileSync(f('srv.pem'), 'utf8') }
}

/**
 * Start a test host at 10.251.<n>.2 with HTTP on `tcp` ports, HTTPS on `tls.ports` and UDP
 * listeners on `udp` ports. `/redirect?to=<url>` answers 302 to the URL.
 */
export async function startTestHost(n: number, name: string, tcp: number[], udp: number[] = [], tls?: TestTls): Promise<TestHost> {
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
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', netns, process.execPath, '-e', SERVER, tcp.join(','), udp.join(','), name, (tls?.ports ?? []).join(',')],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ATTEST_TLS_KEY: tls?.key ?? '', ATTEST_TLS_CERT: tls?.cert ?? '' },
    },
  )
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

/** Namespaces, links, nft tables and sandbox-range TCP listeners of this machine, for before/after comparisons. */
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
  // The proxies listen on the host side of the sandboxes' veths (DEFAULT_SUBNET_RANGE and the tests' ranges).
  const listeners = sh('ss', ['-ltnH'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3] ?? '')
    .filter((a) => /^10\.25[02]\./.test(a))
  return [...ns.map((n) => `netns ${n}`), ...links.map((l) => `link ${l}`), ...tables, ...listeners.map((a) => `listen ${a}`)]
}
