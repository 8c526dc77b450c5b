/**
 * The network sandbox (Linux, root): start-up latency, and what the egress proxy costs
 * against the same destination reached directly from inside the same sandbox.
 *
 * - start to first instruction: `startSandbox` until a command spawned in it has run its
 *   first instruction (`printf` writing a byte), p50 and p95. Target p50 <= 150 ms.
 * - HTTP through the proxy vs direct: added p50 latency of one keep-alive request, and the
 *   throughput of batches of 8 concurrent keep-alive requests. Target >= 0.8x req/s.
 * - CONNECT tunnel bulk transfer (64 MiB over one tunnel) vs a direct TCP connection. Target >= 0.9x bytes/s.
 *
 * Both paths use the same client: the same keep-alive agent settings, concurrency and payload.
 * The proxy records every decision to a hash-chained audit file, as `agent-trust sandbox run` does.
 * The destination is a server in a test namespace of its own (10.251.20.2), declared to the
 * agent as IP literals, so both paths reach the same process. Nothing leaves this machine.
 * Skipped with a printed reason when not root.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseManifest } from 'agent-trust'
import { createAuditLog, fileSink } from 'agent-trust/audit'
import { hasNetAdmin, startSandbox, type Sandbox } from 'agent-trust/sandbox'
import type { Row } from './lib.js'

const HOST = '10.251.20.2'
/** The bare relay's address: the host side of the destination's veth. */
const RELAY = '10.251.20.1'
const BULK = 64 * 1024 * 1024

const SERVER = `
const body = JSON.stringify({ documents: ['q3-report.pdf'] })
require('node:http').createServer({ keepAlive: true }, (q, s) => { s.setHeader('content-type', 'application/json'); s.end(body) }).listen(8080, '0.0.0.0')
const chunk = Buffer.alloc(256 * 1024, 120)
require('node:net').createServer((c) => {
  c.once('data', (d) => {
    let left = Number(String(d).trim())
    const more = () => { while (left > 0) { const n = Math.min(left, chunk.length); left -= n; if (!c.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return c.once('drain', more) } c.end() }
    more()
  })
  c.on('error', () => {})
}).listen(9000, '0.0.0.0', () => console.log('ready'))
`

// Runs inside the sandbox: every measurement interleaves the direct path and the proxy path.
const CLIENT = `
const http = require('node:http'), net = require('node:net')
const [host, proxyHost, proxyPort, bulk, relayHost] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]]
const direct = new http.Agent({ keepAlive: true, maxSockets: 8 })
const viaProxy = new http.Agent({ keepAlive: true, maxSockets: 8 })
const viaRelay = new http.Agent({ keepAlive: true, maxSockets: 8 })
// route: false = direct, true = the proxy, 'relay' = the bare relay
const get = (route) => new Promise((done, fail) => {
  const o = route === true ? { agent: viaProxy, host: proxyHost, port: proxyPort, path: 'http://' + host + ':8080/documents', headers: { host: host + ':8080' } }
    : route === 'relay' ? { agent: viaRelay, host: relayHost, port: 18080, path: '/documents', headers: { host: host + ':8080' } }
    : { agent: direct, host, port: 8080, path: '/documents' }
  http.get(o, (r) => { r.resume(); r.on('end', done) }).on('error', fail)
})
const now = () => Number(process.hrtime.bigint()) / 1000
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }
async function time(op) { const t = now(); await op(); return now() - t }
function tunnel() {
  return new Promise((done, fail) => {
    const r = http.request({ host: proxyHost, port: proxyPort, method: 'CONNECT', path: host + ':9000' })
    r.on('connect', (res, socket) => (res.statusCode === 200 ? done(socket) : fail(new Error('CONNECT ' + res.statusCode))))
    r.on('error', fail); r.end()
  })
}
async function pull(proxied) {
  const s = proxied === true ? await tunnel() : await new Promise((done, fail) => { const c = proxied === 'relay' ? net.connect(19000, relayHost, () => done(c)) : net.connect(9000, host, () => done(c)); c.on('error', fail) })
  const t = now()
  let got = 0
  await new Promise((done) => { s.on('data', (d) => (got += d.length)); s.on('end', done); s.write(bulk + '\\n') })
  s.destroy()
  if (got !== bulk) throw new Error('short read ' + got)
  return now() - t
}
;(async () => {
  const routes = [false, true, 'relay']
  const slot = (p) => (p === true ? 'proxy' : p === 'relay' ? 'relay' : 'direct')
  for (let i = 0; i < 50; i++) for (const p of routes) await get(p)
  const one = { direct: [], proxy: [], relay: [] }
  for (let i = 0; i < 300; i++) for (const p of routes) one[slot(p)].push(await time(() => get(p)))
  const batch = (p) => () => Promise.all(Array.from({ length: 8 }, () => get(p)))
  const many = { direct: [], proxy: [], relay: [] }
  for (let i = 0; i < 61; i++) {
    const order = [0, 1, 2].map((k) => routes[(i + k) % 3])
    for (const p of order) { let t = 0; for (let k = 0; k < 5; k++) t += await time(batch(p)); many[slot(p)].push(t / 5) }
  }
  for (const p of routes) await pull(p)
  const bulkT = { direct: [], proxy: [], relay: [] }
  for (let i = 0; i < 7; i++) for (const p of routes) bulkT[slot(p)].push(await pull(p))
  const m = (o) => ({ direct: median(o.direct), proxy: median(o.proxy), relay: median(o.relay) })
  console.log(JSON.stringify({ one: m(one), many: m(many), bulk: m(bulkT) }))
  process.exit(0)
})().catch((e) => { console.error(String(e)); process.exit(1) })
`

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** The destination host, in a namespace of its own. */
async function destination(): Promise<{ close(): void }> {
  const key = randomBytes(3).toString('hex')
  const ns = `atbench-${key}`
  const hv = `atb${key}h`
  sh('ip', ['netns', 'add', ns])
  const server: { child?: ChildProcess } = {}
  const close = () => {
    server.child?.kill('SIGKILL')
    for (const a of [
      ['link', 'del', hv],
      ['netns', 'del', ns],
    ])
      try {
        sh('ip', a)
      } catch {
        // already gone
      }
  }
  try {
    sh('ip', ['link', 'add', hv, 'type', 'veth', 'peer', 'name', `atb${key}c`, 'netns', ns])
    sh('ip', ['addr', 'add', '10.251.20.1/24', 'dev', hv])
    sh('ip', ['link', 'set', hv, 'up'])
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    sh('ip', ['-n', ns, 'addr', 'add', `${HOST}/24`, 'dev', `atb${key}c`])
    sh('ip', ['-n', ns, 'link', 'set', `atb${key}c`, 'up'])
    sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.251.20.1'])
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
    server.child = child
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve())
      child.once('exit', () => reject(new Error('bench destination exited')))
    })
  } catch (e) {
    close()
    throw e
  }
  return { close }
}

/**
 * The floor for any proxy outside the sandbox: a bare TCP relay in this process (the one
 * the proxy runs in), with no parsing and no decisions, on the same two veth crossings.
 */
async function bareRelay(): Promise<{ close(): void }> {
  const servers = [
    [18080, 8080],
    [19000, 9000],
  ].map(([listen, to]) =>
    createServer({ noDelay: true }, (c) => {
      const u = connect({ host: HOST, port: to as number, noDelay: true })
      c.pipe(u).pipe(c)
      c.on('error', () => u.destroy())
      u.on('error', () => c.destroy())
    }).listen(listen, RELAY),
  )
  await Promise.all(servers.map((s) => new Promise((r) => (s.listening ? r(null) : s.once('listening', r)))))
  return { close: () => servers.forEach((s) => s.close()) }
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))] as number
}

function firstByte(c: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    c.stdout?.once('data', () => resolve())
    c.once('error', reject)
  })
}

export async function benchSandbox(): Promise<Row[]> {
  if (process.platform !== 'linux' || !hasNetAdmin()) {
    console.log('\n## Sandbox\nskipped: the network sandbox needs Linux and root (or CAP_NET_ADMIN)')
    return []
  }
  const manifest = parseManifest({
    agents: [
      {
        id: 'bench-agent',
        trustLevel: 'L2',
        egress: [`http://${HOST}:8080`, `https://${HOST}:9000`, `http://${RELAY}:18080`, `https://${RELAY}:19000`],
      },
    ],
  })
  const dest = await destination()
  const rows: Row[] = []
  try {
    // 1. Start to first instruction, against a plain spawn of the same command.
    const started: number[] = []
    const plain: number[] = []
    for (let i = 0; i < 21; i++) {
      let t = performance.now()
      const p = spawn('sh', ['-c', 'printf x'], { stdio: ['ignore', 'pipe', 'ignore'] })
      await firstByte(p)
      plain.push(performance.now() - t)
      t = performance.now()
      const sb = await startSandbox({ agent: 'bench-agent', manifest })
      try {
        await firstByte(sb.spawn('sh', ['-c', 'printf x'], { stdio: ['ignore', 'pipe', 'ignore'] }))
        started.push(performance.now() - t)
      } finally {
        await sb.close()
      }
    }
    const p50 = percentile(started, 50)
    const p95 = percentile(started, 95)
    rows.push({
      name: `sandbox start to first instruction: p50 ${p50.toFixed(0)} ms, p95 ${p95.toFixed(0)} ms`,
      medianUs: p50 * 1000,
      floorName: 'plain spawn of the command',
      floorUs: percentile(plain, 50) * 1000,
      ratio: p50 / percentile(plain, 50),
      target: '<= 150 ms p50',
      pass: p50 <= 150,
    })

    // 2 and 3. HTTP and CONNECT through the proxy against the direct route, from inside one sandbox.
    const dir = mkdtempSync(join(tmpdir(), 'agent-trust-bench-'))
    const file = join(dir, 'audit.jsonl')
    const audit = createAuditLog({ sinks: [fileSink(file)] })
    const sb: Sandbox = await startSandbox({ agent: 'bench-agent', manifest, audit })
    const relay = await bareRelay()
    // The sandbox's host table lets its veth reach the host only at the proxy; open the relay's
    // two ports too, for this measurement only (inserted before that chain's drop).
    sh('nft', [
      'insert',
      'rule',
      'inet',
      sb.names.hostTable,
      'input',
      'iifname',
      sb.names.hostVeth,
      'tcp',
      'dport',
      '{ 18080, 19000 }',
      'accept',
    ])
    try {
      const c = sb.spawn(process.execPath, ['-e', CLIENT, HOST, sb.proxy!.address, String(sb.proxy!.port), String(BULK), RELAY], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let out = ''
      c.stdout?.on('data', (d: Buffer) => (out += d.toString()))
      const code = await new Promise<number | null>((resolve) => c.once('exit', resolve))
      if (code !== 0) throw new Error(`bench sandbox client failed (${code})`)
      type Pair = { direct: number; proxy: number; relay: number }
      const r = JSON.parse(out) as { one: Pair; many: Pair; bulk: Pair }
      rows.push({
        name: `HTTP request via the proxy: added p50 ${(r.one.proxy - r.one.direct).toFixed(0)} µs`,
        medianUs: r.one.proxy,
        floorName: 'direct (declared IP literal)',
        floorUs: r.one.direct,
        ratio: r.one.proxy / r.one.direct,
      })
      const rps = (8e6 / r.many.proxy).toFixed(0)
      const floorRps = (8e6 / r.many.direct).toFixed(0)
      const tput = r.many.direct / r.many.proxy
      rows.push({
        name: `HTTP keep-alive batches of 8 via the proxy: ${rps} req/s vs ${floorRps} direct (${tput.toFixed(2)}x)`,
        medianUs: r.many.proxy,
        floorName: 'direct',
        floorUs: r.many.direct,
        ratio: r.many.proxy / r.many.direct,
        target: '>= 0.8x req/s',
        pass: tput >= 0.8,
      })
      const relayRps = (8e6 / r.many.relay).toFixed(0)
      rows.push({
        name: `HTTP keep-alive batches of 8 via a bare TCP relay (no parsing, no checks): ${relayRps} req/s (${(r.many.direct / r.many.relay).toFixed(2)}x direct); the proxy: ${(r.many.relay / r.many.proxy).toFixed(2)}x the relay`,
        medianUs: r.many.proxy,
        floorName: 'bare relay',
        floorUs: r.many.relay,
        ratio: r.many.proxy / r.many.relay,
      })
      const mbs = (t: number) => (BULK / (t / 1e6) / 1e6).toFixed(0)
      const bulk = r.bulk.direct / r.bulk.proxy
      rows.push({
        name: `CONNECT tunnel, 64 MiB: ${mbs(r.bulk.proxy)} MB/s vs ${mbs(r.bulk.direct)} MB/s direct (${bulk.toFixed(2)}x)`,
        medianUs: r.bulk.proxy,
        floorName: 'direct TCP',
        floorUs: r.bulk.direct,
        ratio: r.bulk.proxy / r.bulk.direct,
        target: '>= 0.9x bytes/s',
        pass: bulk >= 0.9,
      })
      rows.push({
        name: `64 MiB through a bare TCP relay (Node pipe): ${mbs(r.bulk.relay)} MB/s (${(r.bulk.direct / r.bulk.relay).toFixed(2)}x direct); the tunnel: ${(r.bulk.relay / r.bulk.proxy).toFixed(2)}x the relay`,
        medianUs: r.bulk.proxy,
        floorName: 'bare relay',
        floorUs: r.bulk.relay,
        ratio: r.bulk.proxy / r.bulk.relay,
      })
    } finally {
      relay.close()
      await sb.close()
      await audit.close()
      const decisions = readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"proxy ')).length
      console.log(`(the proxy audited ${decisions} decisions to ${file.replace(dir, '<tmp>')})`)
      rmSync(dir, { recursive: true, force: true })
    }
  } finally {
    dest.close()
  }
  return rows
}
