/**
 * What a first-time operator runs into: `--version`, every failure path of every subcommand
 * with its `[ERR_CODE]` and JSON `error.code`, clean option errors, no audit writes from
 * commands that change nothing. Child processes for the real bin path; in-process runs for
 * the tables (same code path).
 */
import { spawn } from 'node:child_process'
import { getEventListeners } from 'node:events'
import { appendFileSync, chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { Authority, ERROR_CATALOG } from 'agent-trust'
import { createAuditLog, fileSink } from 'agent-trust/audit'
import { COMMANDS } from '../../src/cli/main.js'
import { followFile, sleep } from '../../src/cli/audit.js'
import { escapeText } from '../../src/cli/run.js'
import { packageVersion } from '../../src/cli/version.js'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { cli, cliEnv, cliInProcess, MAIN, workdir } from '../support/cli.js'

const TSX = import.meta.resolve('tsx')

const PKG = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

/** A failure in both forms: `[CODE]` ending the stderr message, and the JSON document under --json. */
function expectFailure(r: { code: number | null; stdout: string; stderr: string }, exit: number, code: string, json: boolean): void {
  expect(r.code).toBe(exit)
  // The message may span lines (a manifest's problems, one per line); the code ends it.
  expect(r.stderr).toMatch(new RegExp(`(^|\\n)agent-trust: \\S[\\s\\S]* \\[${code}\\]\\n$`))
  if (json) {
    const doc = JSON.parse(r.stdout) as { ok: boolean; exitCode: number; error: { code: string; message: string } }
    expect(doc).toMatchObject({ ok: false, exitCode: exit, error: { code } })
    expect(doc.error.message.length).toBeGreaterThan(5)
  }
}

describe('agent-trust --version', () => {
  it('--version and -V print the package version and exit 0 (real bin)', async () => {
    const cwd = workdir('version')
    for (const flag of ['--version', '-V']) {
      const r = await cli([flag], { cwd })
      expect(r.code, flag).toBe(0)
      expect(r.stdout).toBe(`${PKG.version}\n`)
      expect(r.stderr).toBe('')
    }
    const j = await cliInProcess(['--version', '--json'])
    expect(JSON.parse(j.stdout)).toEqual({ version: PKG.version })
  })

  it('the version is found from the built layout (dist/src/cli) as from the source (src/cli)', () => {
    const root = workdir('version-layout')
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'agent-trust', version: '9.8.7' }))
    mkdirSync(join(root, 'dist', 'src', 'cli'), { recursive: true })
    mkdirSync(join(root, 'src', 'cli'), { recursive: true })
    // A package.json of another package on the way up is skipped.
    writeFileSync(join(root, 'dist', 'package.json'), JSON.stringify({ type: 'module' }))
    expect(packageVersion(pathToFileURL(join(root, 'dist', 'src', 'cli', 'main.js')))).toBe('9.8.7')
    expect(packageVersion(pathToFileURL(join(root, 'src', 'cli', 'main.ts')))).toBe('9.8.7')
    expect(packageVersion()).toBe(PKG.version)
  })
})

describe('every failure prints [ERR_CODE] and, with --json, error.code', () => {
  const base = workdir('failures')
  const p = (f: string) => join(base, f)
  const env: Record<string, string | undefined> = {
    AGENT_TRUST_MANIFEST: p('agent-trust.config.json'),
    AGENT_TRUST_AUDIT_FILE: p('cli-audit.jsonl'),
    AGENT_TRUST_OPERATOR: 'test-operator',
    AGENT_TRUST_TRUST_STORE: p('trust.json'),
    PATH: process.env.PATH,
  }
  const FULL = ['--key-file', p('keys/full.json')]
  const EMPTY = ['--key-file', p('keys/empty.json')]
  const JTI = '3f1c2b9e-8a7d-4c3b-9f2e-1a2b3c4d5e6f'
  const UNKNOWN_ID = '0f1c2b9e-8a7d-4c3b-9f2e-1a2b3c4d5e6f'
  let pending = ''
  let token = ''

  beforeAll(async () => {
    expect((await cliInProcess(['keys', 'generate', ...FULL], { env })).code).toBe(0)
    writeFileSync(p('keys/insecure.json'), readFileSync(p('keys/full.json')))
    chmodSync(p('keys/insecure.json'), 0o644)
    const req = await cliInProcess(['trust', 'request', 'agent-status-reader', 'L2', '--reason', 'needs it', '--json'], { env })
    pending = (JSON.parse(req.stdout) as { request: { id: string } }).request.id
    writeFileSync(p('corrupt-store.json'), '{not json')
    writeFileSync(p('bad-manifest.json'), JSON.stringify({ agents: [{ id: 'x', trustLevel: 'L9' }] }))
    writeFileSync(p('not-json.json'), '{"keys": [')
    const authority = await Authority.create({ manifest: MANIFEST })
    writeFileSync(p('jwks.json'), JSON.stringify(authority.jwks()))
    token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    const log = createAuditLog({ sinks: [fileSink(p('trail.jsonl'))] })
    for (let i = 0; i < 3; i++) log.record({ action: 'tool_call', decision: 'allow', note: `n${i}` })
    await log.close()
    const lines = readFileSync(p('trail.jsonl'), 'utf8').split('\n').filter(Boolean)
    writeFileSync(p('tampered.jsonl'), [lines[0], ...lines.slice(2)].map((l) => `${l}\n`).join(''))
  })

  const VERIFY = (t: string, jwks = p('jwks.json')) => ['token', 'verify', t, '--jwks', jwks, '--audience', 'agent-database-reader']
  // [command line, exit code, error code, extra env]
  const rows = (): [string[], number, string, Record<string, string | undefined>?][] => [
    [['keys', 'generate', ...FULL], 1, 'ERR_KEY_STORE_NOT_EMPTY'],
    [['keys', 'generate', '--key-file', p('keys/insecure.json')], 4, 'ERR_KEY_STORE_INSECURE'],
    [['keys', 'rotate', ...EMPTY], 4, 'ERR_KEY_NOT_FOUND'],
    [['keys', 'rotate', ...FULL, '--manifest', p('missing.json')], 4, 'ERR_CONFIG_INVALID'],
    [['keys', 'rotate', ...FULL, '--manifest', p('bad-manifest.json')], 4, 'ERR_CONFIG_INVALID'],
    [['keys', 'jwks', ...EMPTY], 4, 'ERR_KEY_NOT_FOUND'],
    [['keys', 'jwks', '--key-file', p('keys/insecure.json')], 4, 'ERR_KEY_STORE_INSECURE'],
    [['keys', 'revoke', 'no-such-kid', ...FULL], 1, 'ERR_KEY_NOT_FOUND'],
    [['keys', 'revoke', 'no-such-kid', ...EMPTY], 4, 'ERR_KEY_NOT_FOUND'],
    [['revoke', 'token', 'not-a-jti'], 2, 'ERR_USAGE'],
    [['revoke', 'token', JTI], 4, 'ERR_CONFIG_INVALID'],
    [['revoke', 'token', JTI], 3, 'ERR_STORE_UNAVAILABLE', { REDIS_URL: 'redis://127.0.0.1:1' }],
    [['revoke', 'agent', 'not an id!'], 2, 'ERR_USAGE'],
    [['revoke', 'agent', 'agent-not-in-manifest'], 1, 'ERR_AGENT_UNKNOWN', { REDIS_URL: 'redis://127.0.0.1:1' }],
    [
      ['revoke', 'agent', 'agent-untrusted', '--manifest', p('missing.json')],
      4,
      'ERR_CONFIG_INVALID',
      { REDIS_URL: 'redis://127.0.0.1:1' },
    ],
    [['revoke', 'agent', 'agent-untrusted'], 3, 'ERR_STORE_UNAVAILABLE', { REDIS_URL: 'redis://127.0.0.1:1' }],
    [['audit', 'verify', p('missing.jsonl')], 4, 'ERR_FILE_UNREADABLE'],
    [['audit', 'verify', base], 4, 'ERR_FILE_UNREADABLE'],
    [['audit', 'verify', p('tampered.jsonl')], 1, 'ERR_AUDIT_TAMPERED'],
    [['audit', 'verify', p('trail.jsonl'), '--anchor', 'garbage'], 2, 'ERR_USAGE'],
    [['audit', 'verify', p('trail.jsonl'), '--hmac-key-file', p('missing.key')], 4, 'ERR_FILE_UNREADABLE'],
    [['audit', 'verify', '--stream', 'k'], 3, 'ERR_STORE_UNAVAILABLE', { REDIS_URL: 'redis://127.0.0.1:1' }],
    [['audit', 'tail', p('missing.jsonl')], 4, 'ERR_FILE_UNREADABLE'],
    [['audit', 'tail', p('trail.jsonl'), '-n', 'x'], 2, 'ERR_USAGE'],
    [['trust', 'list', '--status', 'bogus'], 2, 'ERR_USAGE'],
    [['trust', 'list', '--store', p('corrupt-store.json')], 4, 'ERR_CONFIG_INVALID'],
    [['trust', 'request', 'agent-status-reader', 'L9', '--reason', 'r'], 2, 'ERR_USAGE'],
    [['trust', 'request', 'agent-status-reader', 'L2'], 2, 'ERR_USAGE'],
    [['trust', 'request', 'agent-not-in-manifest', 'L1', '--reason', 'r'], 1, 'ERR_TRUST_CHANGE_DENIED'],
    [['trust', 'request', 'agent-status-reader', 'L1', '--reason', 'r', '--manifest', p('bad-manifest.json')], 4, 'ERR_CONFIG_INVALID'],
    [['trust', 'approve', 'not-a-uuid', '--yes'], 2, 'ERR_USAGE'],
    [['trust', 'approve', UNKNOWN_ID, '--yes'], 1, 'ERR_TRUST_CHANGE_DENIED'],
    [['trust', 'approve', pending], 2, 'ERR_USAGE'],
    [['trust', 'deny', UNKNOWN_ID], 1, 'ERR_TRUST_CHANGE_DENIED'],
    [['trust', 'deny', 'not-a-uuid'], 2, 'ERR_USAGE'],
    [['token', 'inspect', 'not-a-token'], 4, 'ERR_TOKEN_MALFORMED'],
    [['token', 'inspect', 'a!.b.c'], 4, 'ERR_TOKEN_MALFORMED'],
    [['token', 'inspect', `${Buffer.from('{"a":1,"a":2}').toString('base64url')}.e30.c2ln`], 4, 'ERR_TOKEN_MALFORMED'],
    [['token', 'verify', 'x.y.z'], 2, 'ERR_USAGE'],
    [[...VERIFY('x.y.z', p('missing-jwks.json'))], 4, 'ERR_FILE_UNREADABLE'],
    [[...VERIFY('x.y.z', p('not-json.json'))], 4, 'ERR_CONFIG_INVALID'],
    [[...VERIFY('x.y.z', 'http://127.0.0.1:1/jwks')], 3, 'ERR_AUTHORITY_UNAVAILABLE'],
    [[...VERIFY('not-a-token')], 1, 'ERR_TOKEN_MALFORMED'],
    [[...VERIFY(token), '--issuer', 'someone-else'], 1, 'ERR_TOKEN_ISSUER'],
    [[...VERIFY(token), '--scope', READ_SCOPE], 2, 'ERR_USAGE'],
    [['sandbox', 'run', '--agent', 'agent-untrusted'], 2, 'ERR_USAGE'],
    [['sandbox', 'run', '--agent', 'agent-not-in-manifest', '--', 'true'], 4, 'ERR_AGENT_UNKNOWN'],
    [['sandbox', 'run', '--agent', 'agent-untrusted', '--', p('no-such-command')], 4, 'ERR_FILE_UNREADABLE'],
    [['sandbox', 'export', '--agent', 'agent-not-in-manifest'], 4, 'ERR_AGENT_UNKNOWN'],
    [['sandbox', 'export', '--agent', 'agent-untrusted', '--format', 'bogus'], 2, 'ERR_USAGE'],
    [['sandbox', 'export', '--agent', 'agent-untrusted', '--proxy-port', '0'], 2, 'ERR_USAGE'],
    [['sandbox', 'gc', 'extra'], 2, 'ERR_USAGE'],
  ]

  it('the table names a specific failure for every subcommand', () => {
    const covered = new Set(rows().map(([args]) => `${args[0]} ${args[1]}`))
    for (const g of COMMANDS) for (const s of g.subcommands) expect(covered, `${g.name} ${s.name}`).toContain(`${g.name} ${s.name}`)
  })

  it('each failure, human and --json', async () => {
    for (const [args, exit, code, extra] of rows()) {
      const where = args.join(' ').slice(0, 120)
      expect(Object.keys(ERROR_CATALOG), where).toContain(code)
      const e = { ...env, ...extra }
      const human = await cliInProcess(args, { env: e })
      try {
        expectFailure(human, exit, code, false)
        expectFailure(await cliInProcess([...args, '--json'], { env: e }), exit, code, true)
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}\nstderr: ${human.stderr}`, { cause: err })
      }
    }
  })

  it('generic usage failures of every subcommand: unknown option, missing value, wrong argument count', async () => {
    for (const g of COMMANDS)
      for (const s of g.subcommands) {
        const cmd = [g.name, s.name]
        for (const json of [false, true]) {
          const j = json ? ['--json'] : []
          const unknown = await cliInProcess([...cmd, '--no-such-option', ...j], { env })
          expectFailure(unknown, 2, 'ERR_USAGE', json)
          expect(unknown.stderr).toBe(
            `agent-trust: unknown option "--no-such-option" (see agent-trust ${g.name} ${s.name} --help) [ERR_USAGE]\n`,
          )
          expectFailure(await cliInProcess([...cmd, '--manifest', ...j], { env }), 2, 'ERR_USAGE', false)
          const max = typeof s.args === 'number' ? s.args : (s.args?.[1] ?? 0)
          if (max < 10)
            expectFailure(await cliInProcess([...cmd, ...Array<string>(max + 1).fill('x'), ...j], { env }), 2, 'ERR_USAGE', json)
        }
      }
    for (const args of [['nope'], ['keys', 'nope'], ['audit'], []]) {
      const r = await cliInProcess(args, { env })
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(/^agent-trust: .+ \[ERR_USAGE\]\n$/)
    }
  })

  it('the real bin: the failures a new user hit first', async () => {
    const cwd = workdir('failures-bin')
    const childEnv = { ...env, AGENT_TRUST_MANIFEST: undefined, HOME: process.env.HOME }
    for (const [args, exit, code] of [
      [['keys', 'generate', ...FULL], 1, 'ERR_KEY_STORE_NOT_EMPTY'],
      [['keys', 'revoke', 'no-such-kid', ...FULL], 1, 'ERR_KEY_NOT_FOUND'],
      [['audit', 'verify', p('missing.jsonl')], 4, 'ERR_FILE_UNREADABLE'],
      [[...VERIFY('x.y.z', p('missing-jwks.json')), '--issuer', 'moltbot-authority'], 4, 'ERR_FILE_UNREADABLE'],
      [['token', 'inspect', 'not-a-token'], 4, 'ERR_TOKEN_MALFORMED'],
    ] as const) {
      const r = await cli([...args, '--json'], { cwd, env: childEnv })
      expectFailure(r, exit, code, true)
      expect(r.stderr).not.toMatch(/ENOENT: no such file/)
    }
  })
})

describe('option errors', () => {
  it('an unknown option is one clean line with ERR_USAGE (real bin), not the parser text', async () => {
    const cwd = workdir('options')
    const r = await cli(['keys', 'jwks', '--bogus'], { cwd })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('agent-trust: unknown option "--bogus" (see agent-trust keys jwks --help) [ERR_USAGE]\n')
    const short = await cliInProcess(['audit', 'tail', 'f', '-x'])
    expect(short.stderr).toBe('agent-trust: unknown option "-x" (see agent-trust audit tail --help) [ERR_USAGE]\n')
    const flag = await cliInProcess(['trust', 'list', '--json=yes'])
    expect(flag.stderr).toBe('agent-trust: option "--json" takes no value (see agent-trust trust list --help) [ERR_USAGE]\n')
    const value = await cliInProcess(['trust', 'list', '--status'])
    expect(value.stderr).toBe('agent-trust: option "--status" needs a value (see agent-trust trust list --help) [ERR_USAGE]\n')
  })

  it('outside text in a message is escaped: no terminal control sequence reaches stderr', async () => {
    const evil = 'x\u001b[2J\u001b]0;owned\u0007\u202e\r\nforged line'
    for (const args of [
      [evil],
      ['keys', evil],
      ['keys', 'jwks', `--${evil}`],
      ['keys', 'revoke', evil, '--key-file', '/nonexistent/k.json'],
    ]) {
      const r = await cliInProcess(args, { env: { AGENT_TRUST_AUDIT_FILE: '/nonexistent/audit.jsonl' } })
      expect(r.stderr.trimEnd()).not.toMatch(/[\p{Cc}\p{Cf}]/u)
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
    }
    expect(escapeText('a\u001bb\u2028c\nd', { keepNewlines: true })).toBe('a\\u{1b}b\\u{2028}c\nd')
    expect(escapeText('a\nb')).toBe('a\\u{a}b')
  })
})

describe('audit writes', () => {
  it('commands that change nothing write no audit file; a change writes one sealed chain (real bin, default trail path)', async () => {
    const cwd = workdir('audit-writes')
    // The default trail: ./agent-trust-audit.jsonl in the working directory.
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, AGENT_TRUST_OPERATOR: 'test-operator' }
    const trail = join(cwd, 'agent-trust-audit.jsonl')
    const keys = ['--key-file', join(cwd, 'keys.json')]
    expect((await cli(['keys', 'generate', ...keys], { cwd, env })).code).toBe(0)
    const after = readFileSync(trail, 'utf8')
    expect(after.trim().split('\n')).toHaveLength(2) // the event and the seal
    for (const args of [
      ['keys', 'jwks', ...keys],
      ['keys', 'generate', ...keys], // refused: nothing changed
      ['keys', 'rotate', ...keys, '--manifest', join(cwd, 'missing.json')],
      ['trust', 'list'],
      ['trust', 'request', 'agent-status-reader', 'L9', '--reason', 'r'],
      ['audit', 'verify', trail],
      ['audit', 'tail', trail],
      ['token', 'inspect', 'not-a-token'],
      ['revoke', 'token', 'not-a-jti'],
      ['--version'],
    ]) {
      await cliInProcess(args, { env: { ...env, AGENT_TRUST_AUDIT_FILE: trail } })
      expect(readFileSync(trail, 'utf8'), args.join(' ')).toBe(after)
    }
    await cli(['trust', 'list'], { cwd, env })
    await cli(['keys', 'generate', ...keys], { cwd, env })
    expect(readFileSync(trail, 'utf8')).toBe(after)
  })
})

describe('audit tail --follow', () => {
  it('the poll loop leaves at most one abort listener at any time, none once stopped', async () => {
    const dir = workdir('follow-unit')
    const file = join(dir, 'trail.jsonl')
    writeFileSync(file, '')
    const controller = new AbortController()
    const warnings: Error[] = []
    const onWarning = (w: Error) => warnings.push(w)
    process.on('warning', onWarning)
    const lines: string[] = []
    const done = followFile(file, { offset: 0, pollMs: 1, signal: controller.signal, onLine: (t) => lines.push(t) })
    let most = 0
    // Hundreds of polls: before, each left a listener behind (MaxListenersExceededWarning after 10).
    for (let i = 0; i < 200; i++) {
      if (i === 50) appendFileSync(file, '{"n":1}\n')
      await sleep(1)
      most = Math.max(most, getEventListeners(controller.signal, 'abort').length)
    }
    await vi.waitFor(() => expect(lines).toEqual(['{"n":1}']))
    controller.abort()
    await done
    process.off('warning', onWarning)
    expect(most).toBeLessThanOrEqual(1)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
  })

  it('sleep removes its listener whether it times out or is aborted', async () => {
    const c = new AbortController()
    for (let i = 0; i < 20; i++) await sleep(1, c.signal)
    expect(getEventListeners(c.signal, 'abort')).toHaveLength(0)
    const pending = sleep(60_000, c.signal)
    expect(getEventListeners(c.signal, 'abort')).toHaveLength(1)
    c.abort()
    await pending
    expect(getEventListeners(c.signal, 'abort')).toHaveLength(0)
  })

  it('the real bin: --follow for 5 s prints no MaxListenersExceededWarning and exits 0 on SIGTERM', async () => {
    const dir = workdir('follow-bin')
    const file = join(dir, 'trail.jsonl')
    const log = createAuditLog({ sinks: [fileSink(file)] })
    log.record({ action: 'mint', decision: 'allow', note: 'first\u001b[2J' })
    await log.close()
    const child = spawn(process.execPath, ['--import', TSX, '--conditions=agent-trust-source', MAIN, 'audit', 'tail', file, '--follow'], {
      cwd: dir,
      env: cliEnv(dir) as NodeJS.ProcessEnv,
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve))
    await vi.waitFor(() => expect(out).toContain('first'), { timeout: 10_000 })
    await new Promise((r) => setTimeout(r, 5000))
    child.kill('SIGTERM')
    expect(await closed).toBe(0)
    expect(err).not.toContain('MaxListenersExceededWarning')
    expect(err).toBe('')
    // The agent-written note is escaped: no terminal sequence reaches stdout.
    expect(out).toContain('first\\u{1b}[2J')
    expect(out).not.toContain('\u001b')
  })
})

describe('token verify: a JWKS URL that does not answer names the cause', () => {
  const args = (url: string) => [
    'token',
    'verify',
    'x.y.z',
    '--jwks',
    url,
    '--audience',
    'agent-database-reader',
    '--issuer',
    'i',
    '--json',
  ]
  const check = async (url: string, reason: RegExp, text: RegExp) => {
    const r = await cliInProcess(args(url))
    expectFailure(r, 3, 'ERR_AUTHORITY_UNAVAILABLE', true)
    const e = (JSON.parse(r.stdout) as { error: { message: string; details: { reason: string } } }).error
    expect(e.details.reason).toMatch(reason)
    expect(e.message).toMatch(text)
    expect(e.message).not.toContain('TypeError')
    expect(r.stderr).not.toContain(url)
  }

  it('connection refused', async () => {
    const server = createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const { port } = server.address() as AddressInfo
    await new Promise<void>((r) => server.close(() => r()))
    await check(`http://127.0.0.1:${port}/jwks`, /^ECONNREFUSED$/, /connection refused \(ECONNREFUSED\)/)
  })

  it('a URL the client refuses: the reason, never the URL or its credentials', async () => {
    await check('http://user:secret@127.0.0.1:9/jwks', /^EFETCH$/, /includes credentials: <url>/)
    const r = await cliInProcess(args('http://user:secret@127.0.0.1:9/jwks'))
    expect(r.stdout + r.stderr).not.toContain('secret')
  })

  it('a host name that does not resolve', async () => {
    await check('http://no-such-host.invalid/jwks', /^(ENOTFOUND|EAI_AGAIN)$/, /DNS/)
  })

  it('a server that accepts and never answers: timeout', async () => {
    const sockets: Socket[] = []
    const server = createServer().on('connection', (s) => sockets.push(s))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const { port } = server.address() as AddressInfo
    try {
      await check(`http://127.0.0.1:${port}/jwks`, /^ETIMEDOUT$/, /no answer within 5 s \(ETIMEDOUT\)/)
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})

describe('manifest syntax errors', () => {
  it('the CLI reports the line and column of a JSON syntax error, with ERR_CONFIG_INVALID (exit 4)', async () => {
    const dir = workdir('manifest-syntax')
    const file = join(dir, 'broken.json')
    writeFileSync(file, '{\n  "agents": [\n    { "id": "a", "trustLevel": "L1" }\n  ]\n  "version": 1\n}\n')
    const r = await cli(['trust', 'request', 'a', 'L2', '--reason', 'r', '--manifest', file, '--json'], { cwd: dir })
    expectFailure(r, 4, 'ERR_CONFIG_INVALID', true)
    expect(r.stderr).toContain("expected ',' or '}' at line 5, column 3")
  })
})
