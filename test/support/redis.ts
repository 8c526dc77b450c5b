/**
 * Test harness: the shared Redis (REDIS_URL), and private redis-server processes (single
 * servers and a small Cluster) started on free loopback ports. Every process started here
 * is tracked and killed by `killAll()` (call it in afterAll) and, as a last resort, when
 * the worker exits.
 */
import { randomUUID } from 'node:crypto'
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import type { StoreCheck } from 'agent-trust'

const run = promisify(execFile)

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/** Under CI, Redis tests fail instead of skipping when Redis is missing. */
export const CI = process.env.CI === 'true'

export function randomPrefix(tag: string): string {
  return `at-test-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`
}

/** PING over a raw socket, with a short timeout. */
export function ping(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket()
    let buf = ''
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(timeoutMs, () => done(false))
    s.once('error', () => done(false))
    s.connect(port, host, () => s.write('PING\r\n'))
    s.on('data', (d) => {
      buf += d.toString('latin1')
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'))
    })
  })
}

export async function sharedRedisUp(): Promise<boolean> {
  const u = new URL(REDIS_URL)
  if (u.password !== '' || u.username !== '') {
    // Authenticated URL: use ioredis for the check.
    const r = new Redis(REDIS_URL, {
      lazyConnect: true,
      enableOfflineQueue: false,
      connectTimeout: 500,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    })
    r.on('error', () => undefined)
    try {
      await r.connect()
      return (await r.ping()) === 'PONG'
    } catch {
      return false
    } finally {
      r.disconnect()
    }
  }
  return ping(u.hostname || '127.0.0.1', Number(u.port || 6379))
}

export function redisServerAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

/** Delete every key of a test prefix (patterns are globs; our prefixes contain no glob chars). */
export async function deleteKeys(url: string, pattern: string): Promise<void> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 })
  r.on('error', () => undefined)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await r.unlink(...keys)
    } while (cursor !== '0')
  } finally {
    r.disconnect()
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}

/** A free loopback port (and, for Cluster, its bus port + 10000 free too). */
export async function freePort(withBus = false): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer()
      srv.once('error', reject)
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port
        srv.close(() => resolve(p))
      })
    })
    if (!withBus) return port
    if (port + 10000 < 65536 && (await portFree(port + 10000))) return port
  }
  throw new Error('no free port')
}

const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL')
})

export interface RedisProcess {
  readonly port: number
  readonly url: string
  readonly process: ChildProcess
  /** SIGKILL and wait for the exit. */
  stop(): Promise<void>
  /** Start again on the same port (after stop). */
  restart(): Promise<void>
  /** SIGSTOP: the socket stays open, nothing answers (a hung server). */
  pause(): void
  /** SIGCONT. */
  resume(): void
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Spawn a tracked redis-server (killed by killAll). */
export function spawnRedis(args: string[]): ChildProcess {
  const p = spawn('redis-server', args, { stdio: 'ignore' })
  live.add(p)
  p.once('exit', () => live.delete(p))
  p.on('error', () => undefined)
  return p
}

function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => p.once('exit', () => resolve()))
}

/** Start a private redis-server (no persistence) on a free port. */
export async function startRedis(extraArgs: string[] = [], portIn?: number): Promise<RedisProcess> {
  const port = portIn ?? (await freePort())
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs]
  let proc = spawnRedis(args)
  await waitUntil(() => ping('127.0.0.1', port), 10_000, `redis-server on ${port}`)
  const handle: RedisProcess = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get process() {
      return proc
    },
    async stop() {
      proc.kill('SIGCONT')
      proc.kill('SIGKILL')
      await exited(proc)
    },
    async restart() {
      proc = spawnRedis(args)
      await waitUntil(() => ping('127.0.0.1', port), 10_000, `redis-server on ${port}`)
    },
    pause() {
      proc.kill('SIGSTOP')
    },
    resume() {
      proc.kill('SIGCONT')
    },
  }
  return handle
}

export interface RedisClusterProcesses {
  readonly nodes: ReadonlyArray<{ host: string; port: number }>
  /** Every node's process by port (masters and replicas), to stop, pause or kill one. */
  readonly processes: ReadonlyMap<number, ChildProcess>
  stop(): Promise<void>
}

/**
 * A Cluster of `masters` masters (default 3) on free ports, in a temporary directory, with
 * `replicas` replicas per master (default 0; `redis-cli --cluster create --cluster-replicas`).
 */
export async function startCluster(masters = 3, options: { replicas?: number } = {}): Promise<RedisClusterProcesses> {
  const replicas = options.replicas ?? 0
  const dir = mkdtempSync(join(tmpdir(), 'at-cluster-'))
  const ports: number[] = []
  const procs: ChildProcess[] = []
  const stop = async (): Promise<void> => {
    for (const p of procs) p.kill('SIGKILL')
    await Promise.all(procs.map(exited))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort(true)
      ports.push(port)
      procs.push(
        spawnRedis([
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '2000',
          '--dir',
          dir,
        ]),
      )
    }
    for (const port of ports) await waitUntil(() => ping('127.0.0.1', port), 10_000, `cluster node ${port}`)
    await run(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
      {
        timeout: 20_000,
      },
    )
    await waitUntil(
      async () => {
        for (const port of ports) {
          const { stdout } = await run('redis-cli', ['-p', String(port), 'cluster', 'info'])
          if (!stdout.includes('cluster_state:ok')) return false
        }
        return true
      },
      20_000,
      'cluster_state:ok',
    )
  } catch (e) {
    await stop()
    throw e
  }
  return {
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    processes: new Map(ports.map((port, i) => [port, procs[i] as ChildProcess])),
    stop,
  }
}

export async function killAll(): Promise<void> {
  const all = [...live]
  for (const p of all) {
    p.kill('SIGCONT')
    p.kill('SIGKILL')
  }
  await Promise.all(all.map(exited))
}

/** One consuming store check of a fresh jti for `agent-a`, a minute from expiry; override any field. */
export const storeCheck = (over: Partial<StoreCheck> = {}): StoreCheck => ({
  jti: randomUUID(),
  chain: [],
  agents: ['agent-a'],
  iat: Math.floor(Date.now() / 1000),
  forgetAtMs: Date.now() + 60_000,
  consume: true,
  ...over,
})
