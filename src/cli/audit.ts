/** `agent-trust audit verify|tail`: check and read the hash-chained audit trail. */
import { readFile, stat } from 'node:fs/promises'
import { readAuditLines, verifyAuditTrail, type AuditHead, type AuditVerification } from '../audit/index.js'
import { EXIT, Failed, str, strs, UsageError, type CommandGroup, type Context, type ExitCode } from './run.js'

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

async function verify(ctx: Context): Promise<ExitCode> {
  const target = ctx.positionals[0] as string
  const keyFile = str(ctx.values, 'hmac-key-file')
  const hmacKey = keyFile === undefined ? undefined : (await readFile(keyFile)).toString('utf8').trim()
  const options = {
    requireSealed: ctx.values['require-sealed'] === true,
    allowTrimmedStart: ctx.values['allow-trimmed-start'] === true,
    anchors: strs(ctx.values, 'anchor').map(parseAnchor),
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
        throw new Failed(`Redis is unreachable (${(cause as Error).message})`, EXIT.unavailable)
      })
      report = await verifyAuditTrail(readAuditStream(redis, target), options)
    } finally {
      redis.disconnect()
    }
  } else {
    await stat(target) // a missing file is invalid input (exit 4), not an empty trail
    report = await verifyAuditTrail(target, options)
  }
  ctx.print(report.ok ? report : { ...report, code: 'ERR_AUDIT_TAMPERED' }, describe(report))
  return report.ok ? EXIT.ok : EXIT.failed
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
    ctx.io.out(`${text}\n`)
    return
  }
  let e: unknown
  try {
    e = JSON.parse(text)
  } catch {
    ctx.io.out(`(not JSON) ${text.slice(0, 120)}\n`)
    return
  }
  ctx.io.out(`${typeof e === 'object' && e !== null ? formatEvent(e as Record<string, unknown>) : text.slice(0, 120)}\n`)
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms)
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        resolve()
      },
      { once: true },
    )
  })

async function tail(ctx: Context): Promise<ExitCode> {
  const file = ctx.positionals[0] as string
  const nRaw = str(ctx.values, 'lines') ?? '10'
  const n = Number(nRaw)
  if (!Number.isInteger(n) || n < 0) throw new UsageError('-n takes a non-negative integer')
  const info = await stat(file)
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
  const pollMs = 200
  const signal = ctx.io.signal
  let size = info.size
  const stopped = (): boolean => signal?.aborted === true
  while (!stopped()) {
    await sleep(pollMs, signal)
    if (stopped()) break
    const now = await stat(file).catch(() => undefined)
    if (now === undefined) continue
    if (now.size < offset) {
      ctx.io.err('agent-trust: the file shrank (rotated or truncated); reading it from the start\n')
      offset = 0
    }
    if (now.size === size && now.size === offset) continue
    size = now.size
    for await (const l of readAuditLines(file, { start: offset })) {
      if (!l.complete) break
      offset += Buffer.byteLength(l.text, 'utf8') + 1
      printLine(ctx, l.text)
    }
  }
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
        stream: { type: 'boolean' },
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
