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
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseManifest } from 'agent-trust'
import { createAuditLog, fileSink } from 'agent-trust/audit'
import { hasNetAdmin, startSandbox, type Sandbox } from 'agent-trust/sandbox'
import type { Row } from './lib.js'

const HOST = '10.251.20.2'
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
const [host, proxyHost, proxyPort, bulk] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4])]
const direct = new http.Agent({ keepAlive: true, maxSockets: 8 })
const viaProxy = new http.Agent({ keepAlive: true, maxSockets: 8 })
const get = (proxied) => new Promise((done, fail) => {
  const o = proxied ? { agent: viaProxy, host: proxyHost, port: proxyPort, path: 'http://' + host + ':8080/documents', headers: { host: host + ':8080' } } : { agent: direct, host, port: 8080, path: '/documents' }
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
  const s = proxied ? await tunnel() : await new Promise((done, fail) => { const c = net.connect(9000, host, () => done(c)); c.on('error', fail) })
  const t = now()
  let got = 0
  await new Promise((done) => { s.on('data', (d) => (got += d.length)); s.on('end', done); s.write(bulk + '\\n') })
  s.destroy()
  if (got !== bulk) throw new Error('short read ' + got)
  return now() - t
}
;(async () => {
  for (let i = 0; i < 50; i++) { await get(false); await get(true) }
  const one = { direct: [], proxy: [] }
  for (let i = 0; i < 300; i++) { one.direct.push(await time(() => get(false))); one.proxy.push(await time(() => get(true))) }
  const batch = (p) => () => Promise.all(Array.from({ length: 8 }, () => get(p)))
  const many = { direct: [], proxy: [] }
  for (let i = 0; i < 61; i++) {
    const order = i % 2 === 0 ? [false, true] : [true, false]
    for (const p of order) { let t = 0; for (let k = 0; k < 5; k++) t += await time(batch(p)); (p ? many.proxy : many.direct).push(t / 5) }
  }
  await pull(false); await pull(true)
  const bulkT = { direct: [], proxy: [] }
  for (let i = 0; i < 7; i++) { bulkT.direct.push(await pull(false)); bulkT.proxy.push(await pull(true)) }
  const m = (o) => ({ direct: median(o.direct), proxy: median(o.proxy) })
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
    agents: [{ id: 'bench-agent', trustLevel: 'L2', egress: [`http://${HOST}:8080`, `https://${HOST}:9000`] }],
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
    try {
      const c = sb.spawn(process.execPath, ['-e', CLIENT, HOST, sb.proxy!.address, String(sb.proxy!.port), String(BULK)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let out = ''
      c.stdout?.on('data', (d: Buffer) => (out += d.toString()))
      const code = await new Promise<number | null>((resolve) => c.once('exit', resolve))
      if (code !== 0) throw new Error(`bench sandbox client failed (${code})`)
      type Pair = { direct: number; proxy: number }
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
    } finally {
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
