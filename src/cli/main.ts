#!/usr/bin/env node
/**
 * The `agent-trust` command (package.json `bin`). See `agent-trust --help` and docs/cli.md.
 * Exit codes: 0 ok, 1 denied/failed, 2 usage, 3 unavailable, 4 invalid input or config,
 * 5 internal error.
 */
import { realpathSync } from 'node:fs'
import { createInterface } from 'node:readline/promises'
import { fileURLToPath } from 'node:url'
import { auditCommands } from './audit.js'
import { keysCommands } from './keys.js'
import { revokeCommands } from './revoke.js'
import { sandboxCommands } from './sandbox.js'
import { runCli, type CliIo, type CommandGroup, type ExitCode } from './run.js'
import { tokenCommands } from './token.js'
import { trustCommands } from './trust.js'

export const COMMANDS: readonly CommandGroup[] = [
  keysCommands,
  revokeCommands,
  auditCommands,
  trustCommands,
  tokenCommands,
  sandboxCommands,
]

/** Run the CLI in this process with the given I/O (tests, embedding). */
export function run(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  return runCli(argv, io, COMMANDS)
}

function processIo(): CliIo {
  const controller = new AbortController()
  const stop = (): void => {
    // `audit tail --follow` ends cleanly on the abort (exit 0); anything else still running
    // half a second later (a prompt, a long verify) is interrupted as usual.
    controller.abort()
    setTimeout(() => process.exit(130), 500).unref()
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return {
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    async readStdin() {
      const chunks: Buffer[] = []
      for await (const c of process.stdin) chunks.push(c as Buffer)
      return Buffer.concat(chunks).toString('utf8')
    },
    ...(process.stdin.isTTY
      ? {
          async confirm(question: string) {
            const rl = createInterface({ input: process.stdin, output: process.stderr })
            try {
              return (await rl.question(question)).trim().toLowerCase() === 'yes'
            } finally {
              rl.close()
            }
          },
        }
      : {}),
    env: process.env,
    signal: controller.signal,
  }
}

/** Run only as the program (directly or through the npm bin link), not when imported (tests import `run`). */
function isEntryPoint(): boolean {
  const entry = process.argv[1]
  if (entry === undefined) return false
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isEntryPoint()) {
  const code = await run(process.argv.slice(2), processIo())
  process.exitCode = code
}
