import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryReplayRevocationStore } from 'agent-trust'
import { createAuditLog, fileSink, memorySink, stdoutSink, verifyAuditTrail, verifyAuditLines, type AuditSink } from 'agent-trust/audit'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'

const run = promisify(execFile)
const dir = mkdtempSync(join(tmpdir(), 'agent-trust-audit-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const writer = fileURLToPath(new URL('../support/audit-writer.ts', import.meta.url))
const node = (args: string[]) =>
  run(process.execPath, ['--import', 'tsx', '--conditions=agent-trust-source', ...args], { cwd: process.cwd() })

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>)

describe('audit log with the real kernel', () => {
  it('10,000 concurrent verifications produce exactly 10,000 chained events', async () => {
    const file = join(dir, 'concurrent.jsonl')
    const audit = createAuditLog({ sinks: [fileSink(file)] })
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest: MANIFEST, store })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, audit, mode: 'enforce' })
    const tokens: string[] = []
    for (let i = 0; i < 5000; i++)
      tokens.push(
        await authority.mint({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          scope: [READ_SCOPE],
          operation: 'read',
          context: CONTEXT,
        }),
      )
    // Each token twice, all at once: 5,000 allowed, 5,000 replays denied.
    const calls = [...tokens, ...tokens].map((t) =>
      verifier.verify(t, { scope: READ_SCOPE, operation: 'read', tool: 'read_documents', args: { namespace: 'user-123' } }).then(
        () => 'allow',
        (e: { code: string }) => e.code,
      ),
    )
    const outcomes = await Promise.all(calls)
    await audit.close()
    expect(outcomes.filter((o) => o === 'allow')).toHaveLength(5000)
    expect(outcomes.filter((o) => o === 'ERR_TOKEN_REPLAYED')).toHaveLength(5000)
    const events = lines(file).filter((e) => e.action === 'tool_call')
    expect(events).toHaveLength(10_000)
    expect(events.filter((e) => e.decision === 'allow')).toHaveLength(5000)
    expect(events.filter((e) => e.code === 'ERR_TOKEN_REPLAYED')).toHaveLength(5000)
    expect(new Set(events.map((e) => e.jti)).size).toBe(5000)
    expect(events.every((e) => typeof e.argsHash === 'string' && !JSON.stringify(e).includes('"namespace"'))).toBe(true)
    const text = readFileSync(file, 'utf8')
    expect(text).not.toContain((tokens[0] as string).split('.')[2] as string)
    const report = await verifyAuditTrail(file, { requireSealed: true })
    expect(report.ok).toBe(true)
    expect(report.events).toBe(10_001)
    expect(audit.stats()).toMatchObject({ recorded: 10_001, dropped: 0 })
  })

  it('the authority and the verifier each keep their own chain in one file', async () => {
    const file = join(dir, 'two-logs.jsonl')
    const a = createAuditLog({ sinks: [fileSink(file)] })
    const v = createAuditLog({ sinks: [fileSink(file)] })
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest: MANIFEST, store, audit: a })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, audit: v, mode: 'enforce' })
    for (let i = 0; i < 50; i++) {
      const t = await authority.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
      await verifier.verify(t, { scope: READ_SCOPE, operation: 'read' })
    }
    await authority
      .mint({ subject: 'agent-untrusted', audience: 'agent-database-reader', scope: [READ_SCOPE], operation: 'read', context: CONTEXT })
      .catch(() => undefined)
    await Promise.all([a.close(), v.close()])
    const r = await verifyAuditTrail(file, { requireSealed: true })
    expect(r.ok).toBe(true)
    expect(r.chains.map((c) => c.events).sort((x, y) => x - y)).toEqual([51, 52])
    expect(lines(file).some((e) => e.action === 'mint' && e.decision === 'deny' && e.code === 'ERR_TRUST_LEVEL')).toBe(true)
  })
})

describe('audit sinks', () => {
  it('two processes appending to one file keep two verifiable chains', async () => {
    const file = join(dir, 'shared.jsonl')
    const barrier = join(dir, 'shared.ready')
    const [a, b] = await Promise.all([
      node([writer, file, '3000', 'close', barrier, '2']),
      node([writer, file, '3000', 'close', barrier, '2']),
    ])
    const r = await verifyAuditTrail(file, { requireSealed: true })
    expect(r.ok).toBe(true)
    expect(r.chains).toHaveLength(2)
    expect(r.chains.every((c) => c.events === 3001 && c.sealed)).toBe(true)
    // Each writer's reported head is the head the verifier found: an anchor to keep elsewhere.
    const heads = [JSON.parse(a.stdout), JSON.parse(b.stdout)]
    expect((await verifyAuditTrail(file, { anchors: heads })).ok).toBe(true)
    // The chains really interleaved in the file.
    const ids = lines(file).map((e) => e.chainId)
    let switches = 0
    for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1]) switches++
    expect(switches).toBeGreaterThanOrEqual(10)
  })

  it('a process that exits without close() still writes what it queued (unsealed)', async () => {
    const file = join(dir, 'exit.jsonl')
    await node([writer, file, '500', 'exit'])
    const r = await verifyAuditTrail(file)
    expect(r.ok).toBe(true)
    expect(r.chains[0]).toMatchObject({ events: 500, sealed: false })
    expect((await verifyAuditTrail(file, { requireSealed: true })).firstBreak?.kind).toBe('truncated')
  })

  it('non-ASCII content and batches larger than one write chunk arrive intact', async () => {
    const file = join(dir, 'unicode.jsonl')
    const log = createAuditLog({ sinks: [fileSink(file)], batchSize: 5000 })
    const note = `é中😀\u2028 ${'x'.repeat(480)}`
    for (let i = 0; i < 3000; i++) log.record({ action: 'egress', decision: 'deny', destination: `https://bücher.example/${i}`, note })
    await log.close()
    const r = await verifyAuditTrail(file, { requireSealed: true })
    expect(r.ok).toBe(true)
    expect(r.events).toBe(3001)
    // Non-ASCII text is kept; the line separator, which a terminal acts on, is stored escaped.
    expect(lines(file)[2999]).toMatchObject({ destination: 'https://bücher.example/2999', note: note.replace('\u2028', '\\u{2028}') })
  })

  it('stores caller-chosen strings without a raw control, bidi or invisible character', async () => {
    const file = join(dir, 'hostile.jsonl')
    const log = createAuditLog({ sinks: [fileSink(file)] })
    const hostile = 'agent\u001b[1A\u001b[2K\u009b2J\u202eevil\u200b'
    log.record({
      action: 'mint',
      decision: 'deny',
      origin: hostile,
      destination: hostile,
      tool: hostile,
      note: hostile,
      context: { session_id: hostile, user_id: 'u', task_id: 't' },
    })
    await log.close()
    expect((await verifyAuditTrail(file, { requireSealed: true })).ok).toBe(true)
    const raw = readFileSync(file, 'utf8')
    // eslint-disable-next-line no-control-regex -- the test looks for raw controls
    expect(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e\u200b]/.test(raw)).toBe(false)
    expect(lines(file)[0]).toMatchObject({ origin: 'agent\\u{1b}[1A\\u{1b}[2K\\u{9b}2J\\u{202e}evil\\u{200b}' })
  })

  it('creates the file with mode 0600', async () => {
    const file = join(dir, 'mode.jsonl')
    const log = createAuditLog({ sinks: [fileSink(file)] })
    log.record({ action: 'mint', decision: 'allow' })
    await log.close()
    expect(statSync(file).mode & 0o777).toBe(0o600)
  })

  it('writes to several sinks at once: file, stdout-like stream, memory', async () => {
    const file = join(dir, 'multi.jsonl')
    const stream = new PassThrough()
    const chunks: string[] = []
    stream.on('data', (c: Buffer) => chunks.push(c.toString()))
    const mem = memorySink()
    const log = createAuditLog({ sinks: [fileSink(file), stdoutSink({ stream }), mem] })
    for (let i = 0; i < 100; i++)
      log.record({ action: 'egress', decision: 'deny', code: 'ERR_EGRESS_DENIED', destination: 'https://evil.example' })
    await log.close()
    const fromStream = chunks.join('').split('\n').filter(Boolean)
    expect(fromStream).toHaveLength(101)
    expect(mem.lines).toEqual(fromStream)
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toEqual(fromStream)
    expect(verifyAuditLines(fromStream, { requireSealed: true }).ok).toBe(true)
  })

  it('a failing sink never throws into the call path, is retried, and its drops are counted and reported', async () => {
    let fail = true
    const got: string[] = []
    const flaky: AuditSink = {
      name: 'flaky',
      async write(records) {
        if (fail) throw new Error('disk full')
        for (const r of records) got.push(r.line.slice(0, -1))
      },
      async close() {},
    }
    const throwsSync: AuditSink = {
      name: 'throws',
      write() {
        throw new Error('sync failure')
      },
      async close() {},
    }
    const errors: string[] = []
    const mem = memorySink()
    const log = createAuditLog({
      sinks: [flaky, throwsSync, mem],
      batchSize: 10,
      maxPendingEvents: 50,
      onError: (e, s) => errors.push(`${s}: ${e.message}`),
    })
    for (let i = 0; i < 40; i++) log.record({ action: 'tool_call', decision: 'allow', note: `${i}` })
    await log.flush()
    expect(errors).toContain('flaky: disk full')
    expect(errors).toContain('throws: sync failure')
    expect(log.stats().sinks.find((s) => s.name === 'flaky')).toMatchObject({ pending: 40, dropped: 0, written: 0 })
    // Retried, not lost, as long as the queue holds...
    fail = false
    await log.flush()
    expect(got).toHaveLength(40)
    expect(verifyAuditLines(got).ok).toBe(true)
    // ...beyond it, new events are dropped and counted, and the chain says so once the sink is back.
    fail = true
    for (let i = 0; i < 80; i++) {
      log.record({ action: 'tool_call', decision: 'allow' })
      // Let the healthy sinks drain as they would under real traffic.
      if (i % 10 === 9) await new Promise((r) => setImmediate(r))
    }
    await log.flush()
    expect(log.stats().sinks.find((s) => s.name === 'flaky')?.dropped).toBe(30)
    expect(log.stats().sinks.find((s) => s.name === 'memory')?.dropped).toBe(0)
    fail = false
    await log.flush()
    await log.close()
    const notice = got
      .map((l) => JSON.parse(l) as { action: string; note?: string })
      .find((e) => e.action === 'audit' && e.note?.includes('dropped'))
    expect(notice?.note).toMatch(/sink flaky dropped 30 event/)
    const flakyReport = verifyAuditLines(got)
    expect(flakyReport.firstBreak?.kind).toBe('deleted') // the gap is visible, not hidden
    expect(verifyAuditLines(mem.lines, { requireSealed: true }).ok).toBe(true) // the healthy sink has everything
    expect(log.stats().sinks.find((s) => s.name === 'throws')?.failures).toBeGreaterThan(0)
  })

  it('a sink that never answers does not block record()', async () => {
    const hung: AuditSink = { name: 'hung', write: () => new Promise<void>(() => undefined), async close() {} }
    const log = createAuditLog({ sinks: [hung], batchSize: 8, maxPendingEvents: 64, onError: () => undefined })
    for (let i = 0; i < 1000; i++) log.record({ action: 'tool_call', decision: 'allow' })
    await new Promise((r) => setTimeout(r, 20))
    for (let i = 0; i < 1000; i++) log.record({ action: 'tool_call', decision: 'allow' })
    const s = log.stats()
    expect(s.recorded).toBe(2000)
    expect(s.sinks[0]?.pending).toBeLessThanOrEqual(64)
    expect(s.dropped).toBeGreaterThan(1000)
  })

  it('a file sink on an unwritable path reports, keeps the process alive, and recovers', async () => {
    const sub = join(dir, 'not-yet')
    const file = join(sub, 'audit.jsonl')
    const errors: string[] = []
    const log = createAuditLog({ sinks: [fileSink(file)], onError: (e) => errors.push((e as NodeJS.ErrnoException).code ?? e.message) })
    log.record({ action: 'mint', decision: 'allow' })
    await log.flush()
    expect(errors).toContain('ENOENT')
    const { mkdirSync } = await import('node:fs')
    mkdirSync(sub)
    await log.close()
    expect((await verifyAuditTrail(file, { requireSealed: true })).events).toBe(2)
  })

  it('record() after close() is counted, not written', async () => {
    const mem = memorySink()
    const log = createAuditLog({ sinks: [mem] })
    await log.close()
    log.record({ action: 'mint', decision: 'allow' })
    await log.close()
    expect(mem.lines).toHaveLength(1)
    expect(log.stats()).toMatchObject({ afterClose: 1, dropped: 1 })
  })

  it('record() survives hostile input', async () => {
    const mem = memorySink()
    const log = createAuditLog({ sinks: [mem] })
    const hostile = Object.defineProperty({ action: 'mint', decision: 'allow' }, 'origin', {
      get() {
        throw new Error('boom')
      },
      enumerable: true,
    })
    expect(() => log.record(hostile as never)).not.toThrow()
    expect(() => log.record(null as never)).not.toThrow()
    log.record({ action: 'mint', decision: 'allow' })
    await log.close()
    expect(log.stats().internalErrors).toBe(2)
    expect(verifyAuditLines(mem.lines, { requireSealed: true }).ok).toBe(true)
  })
})
