/**
 * The tiny IPC used by the identity scenario: the launcher sends commands to its child
 * processes and awaits their results. Tokens cross it only where the story says so (the
 * "leak"); keys never do: each process generates its own.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

export interface Result {
  readonly ok: boolean
  readonly code?: string
  readonly value?: unknown
}

interface Command {
  readonly type: 'cmd'
  readonly id: number
  readonly cmd: string
  readonly args?: unknown
}

/** Child side: answer commands with handlers; exit when the launcher goes away. */
export function serve(handlers: Record<string, (args: never) => Promise<unknown>>): void {
  process.on('disconnect', () => process.exit(0))
  process.on('message', (m: Command) => {
    if (m?.type !== 'cmd') return
    const h = handlers[m.cmd]
    const run = h === undefined ? Promise.reject(Object.assign(new Error('unknown command'), { code: 'ERR_GENERIC' })) : h(m.args as never)
    run.then(
      (value) => process.send?.({ type: 'result', id: m.id, ok: true, value }),
      (e: { code?: string }) =>
        process.send?.({ type: 'result', id: m.id, ok: false, code: typeof e?.code === 'string' ? e.code : 'ERR_GENERIC' }),
    )
  })
}

/** Launcher side: one child process running a TypeScript file from this folder. */
export class Child {
  readonly name: string
  readonly process: ChildProcess
  #next = 1
  readonly #pending = new Map<number, (r: Result) => void>()
  #stderr = ''

  constructor(name: string, file: string, args: string[] = []) {
    this.name = name
    this.process = fork(fileURLToPath(new URL(file, import.meta.url)), args, {
      execArgv: ['--import', 'tsx', '--conditions=agent-trust-source'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    })
    this.process.stderr?.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-4000)
    })
    this.process.on('message', (m: { type?: string; id?: number } & Result) => {
      if (m?.type !== 'result' || m.id === undefined) return
      this.#pending.get(m.id)?.(m)
      this.#pending.delete(m.id)
    })
    this.process.on('exit', () => {
      for (const r of this.#pending.values()) r({ ok: false, code: 'ERR_GENERIC' })
      this.#pending.clear()
    })
  }

  /** Send a command and wait for its result (rejects if the process dies or takes too long). */
  call(cmd: string, args?: unknown, timeoutMs = 30_000): Promise<Result> {
    const id = this.#next++
    return new Promise<Result>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.name}: "${cmd}" timed out${this.#stderr ? `\n${this.#stderr}` : ''}`))
      }, timeoutMs)
      this.#pending.set(id, (r) => {
        clearTimeout(timer)
        resolve(r)
      })
      if (this.process.exitCode !== null || !this.process.connected) {
        clearTimeout(timer)
        this.#pending.delete(id)
        reject(new Error(`${this.name} exited${this.#stderr ? `:\n${this.#stderr}` : ''}`))
        return
      }
      this.process.send({ type: 'cmd', id, cmd, args } satisfies Command)
    })
  }

  /** Call and require success; returns the value. */
  async value<T>(cmd: string, args?: unknown, timeoutMs?: number): Promise<T> {
    const r = await this.call(cmd, args, timeoutMs)
    if (!r.ok)
      throw Object.assign(new Error(`${this.name}: "${cmd}" failed with ${r.code}${this.#stderr ? `\n${this.#stderr}` : ''}`), {
        code: r.code,
      })
    return r.value as T
  }

  /** Stop the process and wait for it to exit. */
  async stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return
    const exited = once(this.process, 'exit')
    this.process.kill('SIGTERM')
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }
}
