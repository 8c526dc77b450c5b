/**
 * An authority in a child process of its own (`authority-worker.ts`), driven over IPC: a
 * real `Authority.create` over the Redis store and a Redis key store shared by every process
 * started with the same prefix. `clockSkewMs` runs the whole process's clock ahead or behind.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { JSONWebKeySet } from 'agent-trust'
import { REDIS_URL } from './redis.js'

const WORKER = fileURLToPath(new URL('./authority-worker.ts', import.meta.url))

export interface AuthorityProcess {
  readonly proc: ChildProcess
  /** Calls `authority[method](...args)` in the child; rejects with the error's `code`. */
  call(method: string, ...args: unknown[]): Promise<unknown>
  /** Answers received so far, by call order (for kill-mid-operation tests). */
  readonly answers: Map<number, { ok: boolean; value?: unknown; code?: string }>
  /** Sends a call without waiting; returns its number in `answers`. */
  send(method: string, ...args: unknown[]): number
  readonly ready: Promise<{ jwks: JSONWebKeySet; issuer: string }>
  kill(): Promise<void>
}

const started: ChildProcess[] = []

/** SIGKILL every process this module started (for `afterAll`). */
export function killAuthorityProcesses(): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
}

export interface AuthorityProcessOptions {
  readonly clockSkewMs?: number
  /** Redis Cluster nodes: the store and the key store connect to the Cluster instead of REDIS_URL. */
  readonly nodes?: ReadonlyArray<{ host: string; port: number }>
  /** The store's `shards` (Cluster). */
  readonly shards?: number
  /** The stores' `commandTimeoutMs` (default: theirs). */
  readonly commandTimeoutMs?: number
  /** The authority's `maxChildrenPerParent`. */
  readonly maxChildrenPerParent?: number
}

export function startAuthorityProcess(prefix: string, options: AuthorityProcessOptions = {}): AuthorityProcess {
  const proc = fork(WORKER, [], {
    execArgv: ['--import', 'tsx', '--conditions=agent-trust-source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  started.push(proc)
  let next = 0
  const answers = new Map<number, { ok: boolean; value?: unknown; code?: string }>()
  const waiting = new Map<number, (m: { ok: boolean; value?: unknown; code?: string }) => void>()
  proc.on('message', (m: { id: number; ok: boolean; value?: unknown; code?: string }) => {
    if (m.id >= 0) answers.set(m.id, m)
    waiting.get(m.id)?.(m)
  })
  const request = (msg: Record<string, unknown>, id: number) =>
    new Promise<unknown>((resolve, reject) => {
      waiting.set(id, (m) => (m.ok ? resolve(m.value) : reject(Object.assign(new Error(m.code), { code: m.code }))))
      proc.send({ id, ...msg })
    })
  const ready = request({ op: 'init', url: REDIS_URL, prefix, ...options }, -1) as Promise<{
    jwks: JSONWebKeySet
    issuer: string
  }>
  return {
    proc,
    answers,
    ready,
    call: async (method, ...args) => {
      await ready
      return request({ op: 'call', method, args }, next++)
    },
    send: (method, ...args) => {
      const id = next++
      void request({ op: 'call', method, args }, id).catch(() => undefined)
      return id
    },
    kill: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const exited = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGKILL')
      await exited
    },
  }
}
