/**
 * The `agent-trust` command line: dispatch, options, output and exit codes. Each command
 * group lives in its own file; this one knows nothing of what they do.
 *
 * Exit codes (stable; scripts may rely on them):
 *   0  ok
 *   1  denied, refused or failed verification (a token, an audit trail, a trust change)
 *   2  usage error (unknown command or option, missing argument, confirmation needed)
 *   3  unavailable (Redis, a lock, a JWKS URL did not answer)
 *   4  invalid configuration or input (manifest, key file, unreadable file, undecodable token)
 *   5  internal error
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { AgentTrustError } from '../errors.js'

export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3, invalid: 4, internal: 5 } as const
export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** Everything a command touches outside itself, so that tests can run it in-process. */
export interface CliIo {
  out(text: string): void
  err(text: string): void
  /** The whole of stdin (for `-` arguments: a token kept out of the shell history). */
  readStdin(): Promise<string>
  /** Ask a yes/no question on the terminal; undefined when stdin is not a terminal. */
  confirm?(question: string): Promise<boolean>
  readonly env: Readonly<Record<string, string | undefined>>
  /** Aborted on SIGINT/SIGTERM (ends `audit tail --follow`). */
  readonly signal?: AbortSignal
}

export class UsageError extends Error {
  override name = 'UsageError'
}

/** An outcome that is not an error but must exit non-zero (a broken trail, an invalid token). */
export class Failed extends Error {
  override name = 'Failed'
  readonly code: ExitCode
  constructor(message: string, code: ExitCode = EXIT.failed) {
    super(message)
    this.code = code
  }
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>
export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>

export interface Context {
  readonly io: CliIo
  readonly values: Values
  readonly positionals: readonly string[]
  readonly json: boolean
  /** Print the result: `human` text normally, `data` as one JSON document with `--json`. */
  print(data: unknown, human: string): void
}

export interface Subcommand {
  readonly name: string
  /** One line for the group's help. */
  readonly summary: string
  /** Usage line(s) and details, shown by `--help`. */
  readonly help: string
  readonly options?: OptionSpec
  /** Exact number of positionals, or [min, max]. */
  readonly args?: number | readonly [number, number]
  run(ctx: Context): Promise<ExitCode>
}

export interface CommandGroup {
  readonly name: string
  readonly summary: string
  readonly subcommands: readonly Subcommand[]
}

/** Options every subcommand accepts. */
export const COMMON_OPTIONS: OptionSpec = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  manifest: { type: 'string' },
}

const COMMON_HELP = `Common options:
  --manifest <file>   the manifest (default: AGENT_TRUST_MANIFEST, else agent-trust.config.json)
  --json              machine-readable output on stdout (one JSON document)
  -h, --help          this help

Exit codes: 0 ok, 1 denied/failed, 2 usage, 3 unavailable, 4 invalid input or config, 5 internal error.`

function topHelp(groups: readonly CommandGroup[]): string {
  const lines = [
    'Usage: agent-trust <command> <subcommand> [options]',
    '',
    'Operator commands for agent-trust (zero-trust for multi-agent AI systems).',
    '',
    'Commands:',
  ]
  for (const g of groups) {
    lines.push(`  ${g.name.padEnd(8)} ${g.summary}`)
    for (const s of g.subcommands) lines.push(`    ${`${g.name} ${s.name}`.padEnd(20)} ${s.summary}`)
  }
  lines.push('', 'Run `agent-trust <command> <subcommand> --help` for details.', '', COMMON_HELP)
  return lines.join('\n')
}

function groupHelp(g: CommandGroup): string {
  const lines = [`Usage: agent-trust ${g.name} <subcommand> [options]`, '', g.summary, '', 'Subcommands:']
  for (const s of g.subcommands) lines.push(`  ${s.name.padEnd(10)} ${s.summary}`)
  lines.push('', `Run \`agent-trust ${g.name} <subcommand> --help\` for details.`)
  return lines.join('\n')
}

function subHelp(s: Subcommand): string {
  return `${s.help.trim()}\n\n${COMMON_HELP}`
}

/** Map any failure to a message and an exit code. Messages never carry a token. */
export function classify(e: unknown): { code: ExitCode; message: string; errorCode?: string } {
  if (e instanceof UsageError) return { code: EXIT.usage, message: e.message }
  if (e instanceof Failed) return { code: e.code, message: e.message }
  if (e instanceof AgentTrustError) {
    const c = e.code as string
    if (c === 'ERR_STORE_UNAVAILABLE' || c === 'ERR_SANDBOX_UNAVAILABLE')
      return { code: EXIT.unavailable, message: e.message, errorCode: c }
    if (c === 'ERR_CONFIG_INVALID' || c === 'ERR_KEY_INVALID' || c === 'ERR_KEY_STORE_INSECURE')
      return { code: EXIT.invalid, message: e.message, errorCode: c }
    return { code: EXIT.failed, message: e.message, errorCode: c }
  }
  const errno = (e as NodeJS.ErrnoException | undefined)?.code
  if (typeof errno === 'string' && errno.startsWith('ERR_PARSE_ARGS')) return { code: EXIT.usage, message: (e as Error).message }
  if (errno === 'ENOENT' || errno === 'EACCES' || errno === 'EISDIR' || errno === 'EPERM')
    return { code: EXIT.invalid, message: (e as Error).message }
  if (errno === 'ECONNREFUSED' || errno === 'ETIMEDOUT' || errno === 'ECONNRESET' || errno === 'EHOSTUNREACH')
    return { code: EXIT.unavailable, message: (e as Error).message }
  return { code: EXIT.internal, message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) }
}

/** Run one command line; resolves with the exit code. Never throws. */
export async function runCli(argv: readonly string[], io: CliIo, groups: readonly CommandGroup[]): Promise<ExitCode> {
  const json = argv.includes('--json')
  const fail = (code: ExitCode, message: string, errorCode?: string): ExitCode => {
    io.err(`agent-trust: ${message}${errorCode === undefined ? '' : ` [${errorCode}]`}\n`)
    if (json)
      io.out(
        `${JSON.stringify({ ok: false, exitCode: code, error: { ...(errorCode === undefined ? {} : { code: errorCode }), message } })}\n`,
      )
    return code
  }
  const [groupName, subName, ...rest] = argv
  if (groupName === undefined || groupName === '--help' || groupName === '-h' || groupName === 'help') {
    io.out(`${topHelp(groups)}\n`)
    return groupName === undefined ? EXIT.usage : EXIT.ok
  }
  const group = groups.find((g) => g.name === groupName)
  if (group === undefined) return fail(EXIT.usage, `unknown command "${groupName.slice(0, 40)}" (see agent-trust --help)`)
  if (subName === undefined || subName === '--help' || subName === '-h') {
    io.out(`${groupHelp(group)}\n`)
    return subName === undefined ? EXIT.usage : EXIT.ok
  }
  const sub = group.subcommands.find((s) => s.name === subName)
  if (sub === undefined)
    return fail(EXIT.usage, `unknown subcommand "${group.name} ${subName.slice(0, 40)}" (see agent-trust ${group.name} --help)`)
  let values: Values
  let positionals: string[]
  try {
    const parsed = parseArgs({ args: [...rest], options: { ...COMMON_OPTIONS, ...sub.options }, allowPositionals: true, strict: true })
    values = parsed.values as Values
    positionals = parsed.positionals
  } catch (e) {
    return fail(EXIT.usage, `${(e as Error).message.split('\n')[0]} (see agent-trust ${group.name} ${sub.name} --help)`)
  }
  if (values.help === true) {
    io.out(`${subHelp(sub)}\n`)
    return EXIT.ok
  }
  const [min, max] = typeof sub.args === 'number' ? [sub.args, sub.args] : (sub.args ?? [0, 0])
  if (positionals.length < min || positionals.length > max) {
    return fail(
      EXIT.usage,
      `agent-trust ${group.name} ${sub.name} takes ${min === max ? min : `${min}-${max}`} argument(s), got ${positionals.length} (see --help)`,
    )
  }
  const ctx: Context = {
    io,
    values,
    positionals,
    json: values.json === true,
    print(data, human) {
      io.out(this.json ? `${JSON.stringify(data, null, 2)}\n` : human.endsWith('\n') ? human : `${human}\n`)
    },
  }
  try {
    return await sub.run(ctx)
  } catch (e) {
    const c = classify(e)
    return fail(c.code, c.message, c.errorCode)
  }
}

// ---- helpers shared by commands -----------------------------------------------------

export function str(values: Values, name: string): string | undefined {
  const v = values[name]
  return typeof v === 'string' ? v : undefined
}

export function strs(values: Values, name: string): string[] {
  const v = values[name]
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : []
}

/** The manifest path: `--manifest`, `AGENT_TRUST_MANIFEST`, `agent-trust.config.json`. */
export function manifestPath(ctx: Context): string {
  return str(ctx.values, 'manifest') ?? ctx.io.env.AGENT_TRUST_MANIFEST ?? 'agent-trust.config.json'
}

/** A `-` argument means: read it from stdin (keeps tokens out of shell history and `ps`). */
export async function argOrStdin(ctx: Context, v: string): Promise<string> {
  return v === '-' ? (await ctx.io.readStdin()).trim() : v
}
