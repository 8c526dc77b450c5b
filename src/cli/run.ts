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
import { AgentTrustError, type AgentTrustErrorCode, type ErrorDetails } from '../errors.js'
import { packageVersion } from './version.js'
import { jsonWithoutUnprintable, withoutUnprintable } from '../policy/printable.js'

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

/** A wrong command line: exit 2, `ERR_USAGE`. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** An outcome that must exit non-zero, with the exit code and the stable error code to print. */
export class Failed extends Error {
  override name = 'Failed'
  readonly code: ExitCode
  readonly errorCode: AgentTrustErrorCode
  /** Identifiers for `--json` (`error.details`): an errno-like reason, never a value. */
  readonly details: ErrorDetails | undefined
  constructor(message: string, code: ExitCode, errorCode: AgentTrustErrorCode, details?: ErrorDetails) {
    super(message)
    this.code = code
    this.errorCode = errorCode
    this.details = details
  }
}

/**
 * Text that came from outside (an agent id, a kid, a file path, an audit note, an argument)
 * made safe for a terminal or a log line: control characters (C0, DEL, C1), line and
 * paragraph separators, bidirectional and other format characters (Unicode category Cf)
 * become `\u{…}` escapes, so no input can move the cursor, recolour the terminal, forge a
 * line or reorder what the operator reads. `keepNewlines` keeps `\n` (multi-line messages
 * of the CLI's own). Long text is cut at `max` characters.
 */
export function escapeText(text: string, o: { max?: number; keepNewlines?: boolean } = {}): string {
  const cut = o.max !== undefined && text.length > o.max ? `${text.slice(0, o.max)}...` : text
  return withoutUnprintable(cut, o)
}

/** JSON for a terminal: the value's JSON with every terminal-steering character escaped (still the same value). */
export function jsonForTerminal(value: unknown, indent?: number): string {
  return jsonWithoutUnprintable(JSON.stringify(value, null, indent) ?? 'null', { keepNewlines: true })
}

/** An outside string quoted for a message: escaped, cut at 64 characters. */
export function quote(text: string, max = 64): string {
  return `"${escapeText(text, { max })}"`
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
  lines.push(
    '',
    'Run `agent-trust <command> <subcommand> --help` for details; `agent-trust --version` (-V) prints the version.',
    '',
    COMMON_HELP,
  )
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

const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])
const UNREADABLE_ERRNO: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  ENOTDIR: 'a component of the path is not a directory',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the name is too long',
}

/** Map any failure to a message, an exit code and a stable error code. Messages never carry a token. */
export function classify(e: unknown): { code: ExitCode; message: string; errorCode: AgentTrustErrorCode; details?: ErrorDetails } {
  if (e instanceof UsageError) return { code: EXIT.usage, message: e.message, errorCode: 'ERR_USAGE' }
  if (e instanceof Failed)
    return { code: e.code, message: e.message, errorCode: e.errorCode, ...(e.details === undefined ? {} : { details: e.details }) }
  if (e instanceof AgentTrustError) {
    const c = e.code
    if (c === 'ERR_USAGE') return { code: EXIT.usage, message: e.message, errorCode: c }
    if (c === 'ERR_STORE_UNAVAILABLE' || c === 'ERR_SANDBOX_UNAVAILABLE' || c === 'ERR_AUTHORITY_UNAVAILABLE')
      return { code: EXIT.unavailable, message: e.message, errorCode: c }
    if (c === 'ERR_CONFIG_INVALID' || c === 'ERR_KEY_INVALID' || c === 'ERR_KEY_STORE_INSECURE' || c === 'ERR_FILE_UNREADABLE')
      return { code: EXIT.invalid, message: e.message, errorCode: c }
    return { code: EXIT.failed, message: e.message, errorCode: c }
  }
  const err = e as NodeJS.ErrnoException | undefined
  const errno = err?.code
  if (typeof errno === 'string' && errno.startsWith('ERR_PARSE_ARGS'))
    return { code: EXIT.usage, message: (e as Error).message.split('\n')[0] as string, errorCode: 'ERR_USAGE' }
  if (typeof errno === 'string' && errno in UNREADABLE_ERRNO) {
    const path = typeof err?.path === 'string' ? ` ${quote(err.path, 256)}` : ''
    return { code: EXIT.invalid, message: `cannot read${path}: ${UNREADABLE_ERRNO[errno]} (${errno})`, errorCode: 'ERR_FILE_UNREADABLE' }
  }
  if (typeof errno === 'string' && UNAVAILABLE_ERRNO.has(errno))
    return { code: EXIT.unavailable, message: `${errno}: ${(e as Error).message}`, errorCode: 'ERR_STORE_UNAVAILABLE' }
  return { code: EXIT.internal, message: e instanceof Error ? `${e.name}: ${e.message}` : String(e), errorCode: 'ERR_GENERIC' }
}

/**
 * Check the command line against the options before parsing it, for one clean line per
 * problem instead of the parser's text: an unknown option, a missing value, a value given
 * to a flag.
 */
function checkOptions(args: readonly string[], options: OptionSpec, where: string): void {
  const { tokens } = parseArgs({ args: [...args], options, allowPositionals: true, strict: false, tokens: true })
  for (const t of tokens) {
    if (t.kind !== 'option') continue
    const spec = options[t.name]
    if (spec === undefined) throw new UsageError(`unknown option ${quote(t.rawName, 40)} (see agent-trust ${where} --help)`)
    if (spec.type === 'string' && t.value === undefined)
      throw new UsageError(`option ${quote(t.rawName, 40)} needs a value (see agent-trust ${where} --help)`)
    if (spec.type === 'boolean' && t.value !== undefined)
      throw new UsageError(`option ${quote(t.rawName, 40)} takes no value (see agent-trust ${where} --help)`)
  }
}

/** Run one command line; resolves with the exit code. Never throws. */
export async function runCli(argv: readonly string[], io: CliIo, groups: readonly CommandGroup[]): Promise<ExitCode> {
  const json = argv.includes('--json')
  const fail = (code: ExitCode, message: string, errorCode: AgentTrustErrorCode, details?: ErrorDetails): ExitCode => {
    // Messages may quote outside text; nothing in them reaches the terminal unescaped.
    const safe = escapeText(message, { keepNewlines: true })
    io.err(`agent-trust: ${safe} [${errorCode}]\n`)
    if (json)
      io.out(
        `${JSON.stringify({ ok: false, exitCode: code, error: { code: errorCode, message: safe, ...(details === undefined ? {} : { details }) } })}\n`,
      )
    return code
  }
  const [groupName, subName, ...rest] = argv
  if (groupName === '--version' || groupName === '-V') {
    const version = packageVersion()
    if (version === undefined) return fail(EXIT.internal, "cannot find agent-trust's package.json", 'ERR_GENERIC')
    io.out(argv.includes('--json') ? `${JSON.stringify({ version })}\n` : `${version}\n`)
    return EXIT.ok
  }
  if (groupName === undefined || groupName === '--help' || groupName === '-h' || groupName === 'help') {
    io.out(`${topHelp(groups)}\n`)
    if (groupName === undefined) return fail(EXIT.usage, 'a command is required (see above)', 'ERR_USAGE')
    return EXIT.ok
  }
  const group = groups.find((g) => g.name === groupName)
  if (group === undefined) return fail(EXIT.usage, `unknown command ${quote(groupName, 40)} (see agent-trust --help)`, 'ERR_USAGE')
  if (subName === undefined || subName === '--help' || subName === '-h') {
    io.out(`${groupHelp(group)}\n`)
    if (subName === undefined) return fail(EXIT.usage, `agent-trust ${group.name} needs a subcommand (see above)`, 'ERR_USAGE')
    return EXIT.ok
  }
  const sub = group.subcommands.find((s) => s.name === subName)
  if (sub === undefined)
    return fail(
      EXIT.usage,
      `unknown subcommand ${quote(`${group.name} ${subName}`, 48)} (see agent-trust ${group.name} --help)`,
      'ERR_USAGE',
    )
  let values: Values
  let positionals: string[]
  const options = { ...COMMON_OPTIONS, ...sub.options }
  try {
    checkOptions(rest, options, `${group.name} ${sub.name}`)
    const parsed = parseArgs({ args: [...rest], options, allowPositionals: true, strict: true })
    values = parsed.values as Values
    positionals = parsed.positionals
  } catch (e) {
    const c = classify(e)
    return fail(
      c.code,
      c.code === EXIT.usage && !(e instanceof UsageError) ? `${c.message} (see agent-trust ${group.name} ${sub.name} --help)` : c.message,
      c.errorCode,
    )
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
      'ERR_USAGE',
    )
  }
  const ctx: Context = {
    io,
    values,
    positionals,
    json: values.json === true,
    print(data, human) {
      // Whatever a command prints may hold outside text: escaped once more here, for both forms.
      const text = this.json ? `${jsonForTerminal(data, 2)}\n` : human.endsWith('\n') ? human : `${human}\n`
      io.out(this.json ? text : withoutUnprintable(text, { keepNewlines: true }))
    },
  }
  try {
    return await sub.run(ctx)
  } catch (e) {
    const c = classify(e)
    return fail(c.code, c.message, c.errorCode, c.details)
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
