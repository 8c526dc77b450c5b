/** `agent-trust audit verify|tail`: check and read the hash-chained audit trail. */
import { readFile, stat } from 'node:fs/promises'
import { readAuditLines, readCheckpoints, verifyAuditTrail, type AuditHead, type AuditVerification } from '../audit/index.js'
import { ConfigInvalid } from '../errors.js'
import type { JSONWebKeySet } from '../keys/index.js'
import { escapeText, EXIT, jsonForTerminal, Failed, str, strs, UsageError, type CommandGroup, type Context, type ExitCode } from './run.js'

function parseAnchor(v: string): AuditHead {
  // chainId may itself contain ':'; seq and hash are the last two fields.
  const parts = v.split(':')
  const hash = parts.pop()
  const seq = Number(parts.pop())
  const chainId = parts.join(':')
  if (chainId === '' || hash === undefined || !/^[A-Za-z0-9_-]{43}$/.test(hash) || !Number.isSafeInteger(seq) || seq < 0) {
    throw new UsageError('--anchor takes <chainId>:<seq>:<hash> (as printed by `audit verify` or `log.head()`)')
  }
  return { chainId, seq, hash }
}

function describe(r: AuditVerification): string {
  const lines: string[] = []
  if (r.ok) lines.push(`audit trail OK: ${r.chains.length} chain(s), ${r.events} event(s)`)
  else
    lines.push(
      `audit trail BROKEN: ${r.breaks.length} problem(s); first broken link at line ${r.firstBreak?.line} (${r.firstBreak?.kind}) [ERR_AUDIT_TAMPERED]`,
    )
  for (const b of r.breaks)
    lines.push(
      `  ${b.kind.toUpperCase()} line ${b.line}${b.chainId === undefined ? '' : ` chain ${b.chainId}`}${b.seq === undefined ? '' : ` seq ${b.seq}`}: ${b.message}`,
    )
  for (const c of r.chains) {
    const state = c.break !== undefined ? `broken (${c.break.kind})` : c.sealed ? 'sealed' : 'open (no seal yet)'
    lines.push(
      `  chain ${c.chainId}: ${c.events} event(s), seq ${c.firstSeq}-${c.lastSeq}, ${state}; anchor ${c.chainId}:${c.lastSeq}:${c.head}`,
    )
  }
  return lines.join('\n')
}

/** `--checkpoints <file> --jwks <file>`: the latest verified checkpoint of each chain, as anchors. */
async function checkpointAnchors(ctx: Context): Promise<AuditHead[]> {
  const file = str(ctx.values, 'checkpoints')
  const jwksFile = str(ctx.values, 'jwks')
  if (file === undefined && jwksFile === undefined) return []
  if (file === undefined || jwksFile === undefined) throw new UsageError('--checkpoints <file> and --jwks <file> go together')
  let jwks: JSONWebKeySet
  try {
    jwks = JSON.parse(await readFile(jwksFile, 'utf8')) as JSONWebKeySet
  } catch (e) {
    throw new ConfigInvalid(`--jwks ${JSON.stringify(jwksFile)} is not a readable JWKS file (${(e as Error).message.slice(0, 120)})`)
  }
  // A checkpoint that does not verify is itself evidence of tampering: ERR_AUDIT_TAMPERED.
  return readCheckpoints(await readFile(file, 'utf8'), jwks)
}

async function verify(ctx: Context): Promise<ExitCode> {
  const target = ctx.positionals[0] as string
  const keyFile = str(ctx.values, 'hmac-key-file')
  const hmacKey = keyFile === undefined ? undefined : (await readFile(keyFile)).toString('utf8').trim()
  const options = {
    requireSealed: ctx.values['require-sealed'] === true,
    allowTrimmedStart: ctx.values['allow-trimmed-start'] === true,
    requireAnchored: ctx.values['require-anchored'] === true,
    anchors: [...strs(ctx.values, 'anchor').map(parseAnchor), ...(await checkpointAnchors(ctx))],
    ...(hmacKey === undefined ? {} : { hmacKey }),
  }
  let report: AuditVerification
  if (ctx.values.stream === true) {
    const { readAuditStream } = await import('../audit/redis-entry.js')
    const { Redis } = await import('ioredis')
    const url = ctx.io.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
    const redis = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      connectTimeout: 2000,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    })
    redis.on('error', () => undefined)
    try {
      await redis.connect().catch((cause: unknown) => {
        throw new Failed(`Redis is unreachable (${(cause as Error).message})`, EXIT.unavailable, 'ERR_STORE_UNAVAILABLE')
      })
      report = await verifyAuditTrail(readAuditStream(redis, target), options)
    } finally {
      redis.disconnect()
    }
  } else {
    await stat(target) // a missing file is invalid input (exit 4), not an empty trail
    report = await verifyAuditTrail(target, options)
  }
  if (report.ok) {
    ctx.print(report, describe(report))
    return EXIT.ok
  }
  const message = `audit trail BROKEN: first broken link at line ${report.firstBreak?.line} (${report.firstBreak?.kind})`
  ctx.print(
    { ...report, code: 'ERR_AUDIT_TAMPERED', exitCode: EXIT.failed, error: { code: 'ERR_AUDIT_TAMPERED', message } },
    describe(report),
  )
  ctx.io.err(`agent-trust: ${message} [ERR_AUDIT_TAMPERED]\n`)
  return EXIT.failed
}

function formatEvent(e: Record<string, unknown>): string {
  const parts = [
    String(e.time ?? '?'),
    `${String(e.chainId ?? '?').slice(0, 8)}#${String(e.seq ?? '?')}`,
    String(e.action ?? '?'),
    e.decision === 'allow' ? 'ALLOW' : 'DENY',
    e.code === undefined ? '' : String(e.code),
    `${String(e.origin ?? '-')} -> ${String(e.destination ?? '-')}`,
    e.tool === undefined ? '' : `tool=${String(e.tool)}`,
    Array.isArray(e.capability) ? `scope=${e.capability.join(',')}` : '',
    e.trustLevel === undefined ? '' : `level=${String(e.trustLevel)}`,
    e.jti === undefined ? '' : `jti=${String(e.jti)}`,
    e.note === undefined ? '' : `(${String(e.note)})`,
  ]
  return parts.filter((p) => p !== '').join('  ')
}

function printLine(ctx: Context, text: string): void {
  if (text.trim() === '') return
  if (ctx.json) {
    // The trail's bytes are outside text too: one JSON document per line, every character that
    // could steer a terminal escaped; a line that is not JSON is carried as a string.
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      value = { notJson: text }
    }
    ctx.io.out(`${jsonForTerminal(value)}\n`)
    return
  }
  let e: unknown
  try {
    e = JSON.parse(text)
  } catch {
    ctx.io.out(`(not JSON) ${escapeText(text, { max: 120 })}\n`)
    return
  }
  // Every field may be agent-written (a note, a tool name): escaped before the terminal.
  ctx.io.out(`${escapeText(typeof e === 'object' && e !== null ? formatEvent(e as Record<string, unknown>) : text, { max: 2000 })}\n`)
}

/** Wait `ms`, or less when `signal` aborts. Leaves no listener on `signal` behind either way. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted === true) return resolve()
    const done = (): void => {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const t = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

export interface FollowOptions {
  /** Bytes already read (the start of the first line not yet printed). */
  readonly offset: number
  readonly pollMs?: number
  readonly signal?: AbortSignal
  /** Each complete new line, in order. */
  onLine(text: string): void
  /** The file got shorter than what was read (rotated or truncated): it is re-read from the start. */
  onShrink?(): void
}

/** Poll `file` for complete new lines until `signal` aborts (`audit tail --follow`). */
export async function followFile(file: string, o: FollowOptions): Promise<void> {
  const pollMs = o.pollMs ?? 200
  let offset = o.offset
  let size = -1
  const stopped = (): boolean => o.signal?.aborted === true
  while (!stopped()) {
    await sleep(pollMs, o.signal)
    if (stopped()) break
    const now = await stat(file).catch(() => undefined)
    if (now === undefined) continue
    if (now.size < offset) {
      o.onShrink?.()
      offset = 0
    }
    if (now.size === size && now.size === offset) continue
    size = now.size
    for await (const l of readAuditLines(file, { start: offset })) {
      if (!l.complete) break
      offset += Buffer.byteLength(l.text, 'utf8') + 1
      o.onLine(l.text)
    }
  }
}

async function tail(ctx: Context): Promise<ExitCode> {
  const file = ctx.positionals[0] as string
  const nRaw = str(ctx.values, 'lines') ?? '10'
  const n = Number(nRaw)
  if (!Number.isInteger(n) || n < 0) throw new UsageError('-n takes a non-negative integer')
  await stat(file) // a missing file is invalid input (exit 4)
  const last: string[] = []
  let offset = 0
  for await (const l of readAuditLines(file)) {
    if (!l.complete) break // a line being written: printed once complete, when following
    offset += Buffer.byteLength(l.text, 'utf8') + 1
    if (n === 0) continue
    last.push(l.text)
    if (last.length > n) last.shift()
  }
  for (const l of last) printLine(ctx, l)
  if (ctx.values.follow !== true) return EXIT.ok
  await followFile(file, {
    offset,
    ...(ctx.io.signal === undefined ? {} : { signal: ctx.io.signal }),
    onLine: (text) => printLine(ctx, text),
    onShrink: () => ctx.io.err('agent-trust: the file shrank (rotated or truncated); reading it from the start\n'),
  })
  return EXIT.ok
}

export const auditCommands: CommandGroup = {
  name: 'audit',
  summary: 'verify and read the hash-chained audit trail',
  subcommands: [
    {
      name: 'verify',
      summary: 'check the hash chains; report the first broken link',
      args: 1,
      options: {
        'require-sealed': { type: 'boolean' },
        anchor: { type: 'string', multiple: true },
        'hmac-key-file': { type: 'string' },
        'allow-trimmed-start': { type: 'boolean' },
        'require-anchored': { type: 'boolean' },
        stream: { type: 'boolean' },
        checkpoints: { type: 'string' },
        jwks: { type: 'string' },
      },
      help: `Usage: agent-trust audit verify <file> [options]
       agent-trust audit verify --stream <key> [options]     (a Redis stream at REDIS_URL)

Checks every chain in the trail (one per writing process) and reports, per chain, the
first broken link: an edited, deleted, inserted, reordered or truncated event.
Exit 0 when every chain verifies, 1 when one does not, 4 when the file cannot be read.

Options:
  --require-sealed        a chain without its seal (written by close()) counts as truncated;
                          use it on the files of processes that have exited
  --anchor <id:seq:hash>  a head recorded elsewhere (repeatable): detects a cut tail and a
                          chain re-hashed from scratch
  --checkpoints <file>    signed checkpoints (withCheckpoints); each is verified with --jwks and
                          the latest per chain is an anchor (a line that does not verify fails)
  --jwks <file>           the checkpoint key's public JWKS
  --require-anchored      every chain needs an anchor (--anchor, --checkpoints): a SHA-256
                          chain someone wrote whole from seq 0 verifies otherwise
  --hmac-key-file <file>  the key the writer used (hmacKey), for keyed chains
  --allow-trimmed-start   accept chains that do not start at seq 0 (trimmed streams)
  --stream                read the Redis stream <key> (REDIS_URL) instead of a file`,
      run: verify,
    },
    {
      name: 'tail',
      summary: 'print the last events; --follow for new ones',
      args: 1,
      options: { lines: { type: 'string', short: 'n' }, follow: { type: 'boolean', short: 'f' } },
      help: `Usage: agent-trust audit tail <file> [-n <count>] [--follow]

Prints the last events of a trail (default 10), one per line:
  time  chain#seq  action  ALLOW|DENY  code  origin -> destination  tool  scope  level  jti
With --json, prints the raw JSONL lines instead. With --follow, keeps printing new events
until interrupted (Ctrl-C). Reading is not verifying: use \`audit verify\` for that.`,
      run: tail,
    },
  ],
}
