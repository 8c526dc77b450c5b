/** Run the CLI as a child process (the real bin path) or in-process (fast, for option tables). */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll } from 'vitest'
import { run } from '../../src/cli/main.js'
import type { CliIo } from '../../src/cli/run.js'
import { MANIFEST } from './kernel.js'

export const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url))
const TSX = import.meta.resolve('tsx')

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** A fresh working directory with the test manifest as agent-trust.config.json. */
const made: string[] = []
// Every test file importing this removes its working directories at the end.
afterAll(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true })
})

export function workdir(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `agent-trust-cli-${tag}-`))
  made.push(dir)
  writeFileSync(join(dir, 'agent-trust.config.json'), JSON.stringify(MANIFEST))
  return dir
}

/** Env for a child: only what the CLI reads, with the audit trail kept in `cwd`. */
export function cliEnv(cwd: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AGENT_TRUST_AUDIT_FILE: join(cwd, 'cli-audit.jsonl'),
    AGENT_TRUST_OPERATOR: 'test-operator',
    ...extra,
  }
}

export function cli(
  args: readonly string[],
  o: { cwd: string; env?: Record<string, string | undefined>; input?: string },
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, '--conditions=agent-trust-source', MAIN, ...args], {
      cwd: o.cwd,
      env: (o.env ?? cliEnv(o.cwd)) as NodeJS.ProcessEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(o.input ?? '')
  })
}

/** The CLI in this process: same code path, no child start-up cost. */
export async function cliInProcess(
  args: readonly string[],
  o: { env?: Record<string, string | undefined>; stdin?: string; confirm?: (q: string) => Promise<boolean>; signal?: AbortSignal } = {},
): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    out: (t) => void (stdout += t),
    err: (t) => void (stderr += t),
    readStdin: async () => o.stdin ?? '',
    ...(o.confirm === undefined ? {} : { confirm: o.confirm }),
    env: o.env ?? {},
    ...(o.signal === undefined ? {} : { signal: o.signal }),
  }
  const code = await run(args, io)
  return { code, stdout, stderr }
}
