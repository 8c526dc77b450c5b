/**
 * The `agent-trust` command: help, exit codes and --json for every group, the audit and
 * token commands. Child processes for the real bin path; in-process runs for the tables.
 */
import { spawn } from 'node:child_process'
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority } from 'agent-trust'
import { createAuditLog, fileSink, verifyAuditTrail } from 'agent-trust/audit'
import { COMMANDS } from '../../src/cli/main.js'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { cli, cliEnv, cliInProcess, MAIN, workdir } from '../support/cli.js'

const TSX = import.meta.resolve('tsx')

describe('agent-trust: help and usage', () => {
  it('--help works on the program, every group and every subcommand (exit 0)', async () => {
    expect((await cliInProcess(['--help'])).code).toBe(0)
    for (const g of COMMANDS) {
      const gh = await cliInProcess([g.name, '--help'])
      expect(gh.code).toBe(0)
      expect(gh.stdout).toContain(`agent-trust ${g.name}`)
      for (const s of g.subcommands) {
        const r = await cliInProcess([g.name, s.name, '--help'])
        expect(r.code, `${g.name} ${s.name} --help`).toBe(0)
        expect(r.stdout).toMatch(/^Usage: agent-trust /)
        expect(r.stdout).toContain('Exit codes: 0 ok, 1 denied/failed, 2 usage, 3 unavailable, 4 invalid')
      }
    }
  })

  it('usage errors exit 2, with a JSON error under --json', async () => {
    for (const args of [
      [],
      ['nope'],
      ['audit'],
      ['audit', 'nope'],
      ['audit', 'verify'],
      ['audit', 'verify', 'a', 'b'],
      ['audit', 'verify', 'x', '--bogus'],
      ['token', 'verify', 'x'],
      ['revoke', 'token', 'not-a-jti'],
    ]) {
      const r = await cliInProcess([...args, '--json'], { env: { REDIS_URL: 'redis://127.0.0.1:1' } })
      expect(r.code, args.join(' ')).toBe(2)
      if (args.length >= 2) expect(JSON.parse(r.stdout.trim().split('\n').pop() as string)).toMatchObject({ ok: false, exitCode: 2 })
    }
  })

  it('the real bin: --help exit 0, unknown option exit 2 with a message on stderr', async () => {
    const cwd = workdir('bin')
    const help = await cli(['--help'], { cwd })
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Usage: agent-trust')
    const bad = await cli(['trust', 'list', '--nope'], { cwd })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/agent-trust: .*nope/)
  })
})

describe('agent-trust audit', () => {
  let dir: string
  let file: string
  beforeAll(async () => {
    dir = workdir('audit')
    file = join(dir, 'trail.jsonl')
    const log = createAuditLog({ sinks: [fileSink(file)] })
    for (let i = 0; i < 30; i++)
      log.record({
        action: 'tool_call',
        decision: i % 2 === 0 ? 'allow' : 'deny',
        origin: 'agent-summarizer-v2',
        destination: 'agent-database-reader',
        tool: 'read_documents',
        note: `n${i}`,
      })
    await log.close()
  })

  it('verify: exit 0 and a report; --json gives the structured result', async () => {
    const r = await cli(['audit', 'verify', file, '--require-sealed'], { cwd: dir })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/audit trail OK: 1 chain\(s\), 31 event\(s\)/)
    const j = await cliInProcess(['audit', 'verify', file, '--json'])
    expect(j.code).toBe(0)
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, events: 31, chains: [{ sealed: true, events: 31 }] })
  })

  it('verify: a tampered trail exits 1 and names the first broken link; an anchor catches a cut tail', async () => {
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean)
    const tampered = join(dir, 'tampered.jsonl')
    writeFileSync(tampered, [...lines.slice(0, 10), ...lines.slice(11)].map((l) => `${l}\n`).join(''))
    const r = await cli(['audit', 'verify', tampered, '--json'], { cwd: dir })
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, firstBreak: { kind: 'deleted', seq: 10, line: 11 } })
    const ok = await cliInProcess(['audit', 'verify', file, '--json'])
    const chain = JSON.parse(ok.stdout).chains[0]
    const cut = join(dir, 'cut.jsonl')
    writeFileSync(
      cut,
      lines
        .slice(0, 20)
        .map((l) => `${l}\n`)
        .join(''),
    )
    expect((await cliInProcess(['audit', 'verify', cut])).code).toBe(0)
    const anchored = await cliInProcess(['audit', 'verify', cut, '--anchor', `${chain.chainId}:${chain.lastSeq}:${chain.head}`])
    expect(anchored.code).toBe(1)
    expect(anchored.stdout).toContain('TRUNCATED')
    expect((await cliInProcess(['audit', 'verify', cut, '--anchor', 'garbage'])).code).toBe(2)
    // --require-anchored: a chain with no anchor is reported (exit 1); the anchored file passes.
    const head = `${chain.chainId}:${chain.lastSeq}:${chain.head}`
    expect((await cliInProcess(['audit', 'verify', file, '--require-anchored'])).code).toBe(1)
    expect((await cliInProcess(['audit', 'verify', file, '--require-anchored', '--anchor', head])).code).toBe(0)
  })

  it('verify: a missing file is invalid input (exit 4)', async () => {
    expect((await cliInProcess(['audit', 'verify', join(dir, 'missing.jsonl')])).code).toBe(4)
  })

  it('tail: the last n events, human or raw JSONL', async () => {
    const human = await cliInProcess(['audit', 'tail', file, '-n', '3'])
    expect(human.code).toBe(0)
    const rows = human.stdout.trim().split('\n')
    expect(rows).toHaveLength(3)
    expect(rows[0]).toContain('(n28)')
    expect(rows[2]).toContain('(seal)')
    const raw = await cliInProcess(['audit', 'tail', file, '-n', '2', '--json'])
    expect(
      raw.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).seq),
    ).toEqual([29, 30])
    expect((await cliInProcess(['audit', 'tail', file, '-n', 'x'])).code).toBe(2)
  })

  it('tail and token inspect never put a terminal-steering character on the terminal, in either form', async () => {
    // Raw ESC, CSI (C1), DEL, bidi override and a zero-width space: in a trail line that is JSON and in one that is not.
    const hostile = 'x\u001b]0;owned\u0007\u009b2J\u007f\u202eevil\u200b'
    const bad = join(dir, 'hostile.jsonl')
    // JSON.stringify leaves DEL, C1 and the format characters raw in the first line; the second is not JSON at all.
    writeFileSync(bad, `${JSON.stringify({ note: hostile })}\n{not json ${hostile}\n`)
    const claims = Buffer.from(JSON.stringify({ sub: hostile, iss: 'i', aud: 'a' })).toString('base64url')
    const token = `${Buffer.from('{"alg":"ES256","typ":"agent-cap+jwt","kid":"k"}').toString('base64url')}.${claims}.${Buffer.alloc(64).toString('base64url')}`
    // eslint-disable-next-line no-control-regex -- the characters under test
    const steering = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b\u202a-\u202e\u2066-\u2069]/
    for (const args of [
      ['audit', 'tail', bad],
      ['audit', 'tail', bad, '--json'],
      ['token', 'inspect', token],
      ['token', 'inspect', token, '--json'],
    ]) {
      const r = await cliInProcess(args)
      expect(r.code, args.join(' ')).toBe(0)
      expect(r.stdout, args.join(' ')).not.toMatch(steering)
    }
    // The JSON forms stay JSON with the same values.
    const rows = (await cliInProcess(['audit', 'tail', bad, '--json'])).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(rows).toEqual([{ note: hostile }, { notJson: `{not json ${hostile}` }])
    expect(JSON.parse((await cliInProcess(['token', 'inspect', token, '--json'])).stdout).payload.sub).toBe(hostile)
  })

  it('tail --follow prints events appended later, and stops on SIGTERM with exit 0', async () => {
    const live = join(dir, 'live.jsonl')
    const log = createAuditLog({ sinks: [fileSink(live)], flushIntervalMs: 5 })
    log.record({ action: 'mint', decision: 'allow', note: 'before' })
    await log.flush()
    const child = spawn(
      process.execPath,
      ['--import', TSX, '--conditions=agent-trust-source', MAIN, 'audit', 'tail', live, '--follow', '--json'],
      { cwd: dir, env: cliEnv(dir) as NodeJS.ProcessEnv },
    )
    let out = ''
    const seen = (text: string) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (out.includes(text)) resolve()
        }
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          check()
        })
        check()
      })
    await seen('"before"')
    log.record({ action: 'revoke', decision: 'allow', note: 'after' })
    await log.flush()
    await seen('"after"')
    // A line being written (no newline yet) waits until it is complete.
    appendFileSync(live, '{"partial":')
    const code = new Promise<number | null>((resolve) => child.on('close', resolve))
    child.kill('SIGTERM')
    expect(await code).toBe(0)
    expect(out).not.toContain('partial')
    await log.close()
  })
})

describe('agent-trust token', () => {
  let dir: string
  let authority: Authority
  let token: string
  let jwksFile: string
  let server: Server
  let jwksUrl: string
  beforeAll(async () => {
    dir = workdir('token')
    authority = await Authority.create({ manifest: MANIFEST })
    token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    jwksFile = join(dir, 'jwks.json')
    writeFileSync(jwksFile, JSON.stringify(authority.jwks()))
    server = createServer((req, res) => {
      if (req.url === '/jwks') {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify(authority.jwks()))
      } else {
        res.statusCode = 404
        res.end()
      }
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    jwksUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/jwks`
  })
  afterAll(() => new Promise<void>((r) => server.close(() => r())))

  it('inspect: decodes, says UNVERIFIED, never prints the signature; reads "-" from stdin', async () => {
    const sig = token.split('.')[2] as string
    const r = await cli(['token', 'inspect', '-'], { cwd: dir, input: `${token}\n` })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^UNVERIFIED/)
    expect(r.stdout).toContain('"sub": "agent-summarizer-v2"')
    expect(r.stdout).toContain('signature: 64 bytes (not shown)')
    expect(r.stdout + r.stderr).not.toContain(sig)
    const j = await cliInProcess(['token', 'inspect', token, '--json'])
    const parsed = JSON.parse(j.stdout)
    expect(parsed).toMatchObject({
      verified: false,
      header: { alg: 'ES256', typ: 'agent-cap+jwt' },
      payload: { aud: 'agent-database-reader' },
      signatureBytes: 64,
      expired: false,
    })
    expect(parsed.warning).toMatch(/UNVERIFIED/)
    expect(j.stdout).not.toContain(sig)
  })

  it('inspect: something that is not a JWS exits 4', async () => {
    for (const bad of ['abc', 'a.b', 'e30.!!!.x', `${'a'.repeat(9000)}.b.c`])
      expect((await cliInProcess(['token', 'inspect', bad])).code, bad.slice(0, 10)).toBe(4)
  })

  it('verify: valid against a JWKS file and URL (exit 0), not consumed', async () => {
    const r = await cli(
      ['token', 'verify', '-', '--jwks', jwksFile, '--audience', 'agent-database-reader', '--scope', READ_SCOPE, '--operation', 'read'],
      { cwd: dir, input: token },
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^VALID/)
    expect(r.stdout).not.toContain(token.split('.')[2] as string)
    const j = await cliInProcess([
      'token',
      'verify',
      token,
      '--jwks',
      jwksUrl,
      '--audience',
      'agent-database-reader',
      '--issuer',
      authority.id,
      '--json',
    ])
    expect(j.code).toBe(0)
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: true, consumed: false, claims: { sub: 'agent-summarizer-v2' } })
  })

  it('verify: denials exit 1 with the code; unreachable JWKS exits 3; missing --issuer without manifest exits 2', async () => {
    const env = {}
    const aud = await cliInProcess(
      ['token', 'verify', token, '--jwks', jwksFile, '--audience', 'agent-other-server', '--issuer', authority.id, '--json'],
      { env },
    )
    expect(aud.code).toBe(1)
    expect(JSON.parse(aud.stdout)).toMatchObject({ ok: false, error: { code: 'ERR_TOKEN_AUDIENCE' } })
    const [h, p] = token.split('.') as [string, string]
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString())
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, trust_level: 'L3' })).toString('base64url')}.${token.split('.')[2]}`
    const sig = await cliInProcess([
      'token',
      'verify',
      forged,
      '--jwks',
      jwksFile,
      '--audience',
      'agent-database-reader',
      '--issuer',
      authority.id,
      '--json',
    ])
    expect(JSON.parse(sig.stdout).error.code).toBe('ERR_TOKEN_SIGNATURE')
    const wrongIss = await cliInProcess([
      'token',
      'verify',
      token,
      '--jwks',
      jwksFile,
      '--audience',
      'agent-database-reader',
      '--issuer',
      'someone-else',
      '--json',
    ])
    expect(wrongIss.code).toBe(1)
    const scope = await cliInProcess([
      'token',
      'verify',
      token,
      '--jwks',
      jwksFile,
      '--audience',
      'agent-database-reader',
      '--issuer',
      authority.id,
      '--scope',
      'db:read:documents:namespace:user-999',
      '--operation',
      'read',
      '--json',
    ])
    expect(JSON.parse(scope.stdout).error.code).toBe('ERR_SCOPE_DENIED')
    const down = await cliInProcess([
      'token',
      'verify',
      token,
      '--jwks',
      'http://127.0.0.1:1/jwks',
      '--audience',
      'agent-database-reader',
      '--issuer',
      authority.id,
    ])
    expect(down.code).toBe(3)
    const noIssuer = await cliInProcess([
      'token',
      'verify',
      token,
      '--jwks',
      jwksFile,
      '--audience',
      'agent-database-reader',
      '--manifest',
      join(dir, 'nope.json'),
    ])
    expect(noIssuer.code).toBe(2)
    const badJwks = join(dir, 'bad-jwks.json')
    writeFileSync(badJwks, '{"nokeys":1}')
    expect(
      (await cliInProcess(['token', 'verify', token, '--jwks', badJwks, '--audience', 'agent-database-reader', '--issuer', authority.id]))
        .code,
    ).toBe(4)
  })
})

describe('agent-trust keys', () => {
  it('generate, refuse to overwrite, jwks, rotate, revoke; the key file is 0600 and every change is audited', async () => {
    const dir = workdir('keys')
    const keyFile = join(dir, 'keys.json')
    const env = cliEnv(dir)
    const gen = await cli(['keys', 'generate', '--key-file', keyFile, '--json'], { cwd: dir, env })
    expect(gen.code).toBe(0)
    const { kid } = JSON.parse(gen.stdout)
    expect(statSync(keyFile).mode & 0o777).toBe(0o600)
    expect(gen.stdout).not.toContain('"d"')
    const again = await cliInProcess(['keys', 'generate', '--key-file', keyFile], { env })
    expect(again.code).toBe(1)
    const jwks = await cliInProcess(['keys', 'jwks', '--key-file', keyFile], { env })
    expect(JSON.parse(jwks.stdout).keys.map((k: { kid: string }) => k.kid)).toEqual([kid])
    expect(jwks.stdout).not.toContain('"d"')
    const rot = await cliInProcess(['keys', 'rotate', '--key-file', keyFile, '--immediate', '--json'], { env })
    expect(rot.code).toBe(0)
    const next = JSON.parse(rot.stdout).kid as string
    expect(next).not.toBe(kid)
    expect(JSON.parse((await cliInProcess(['keys', 'jwks', '--key-file', keyFile], { env })).stdout).keys).toHaveLength(2)
    expect((await cliInProcess(['keys', 'revoke', kid, '--key-file', keyFile], { env })).code).toBe(0)
    expect(
      JSON.parse((await cliInProcess(['keys', 'jwks', '--key-file', keyFile], { env })).stdout).keys.map((k: { kid: string }) => k.kid),
    ).toEqual([next])
    expect((await cliInProcess(['keys', 'revoke', 'no-such-kid', '--key-file', keyFile], { env })).code).toBe(1)
    expect((await cliInProcess(['keys', 'jwks', '--key-file', join(dir, 'empty.json')], { env })).code).toBe(4)
    const trail = await verifyAuditTrail(env.AGENT_TRUST_AUDIT_FILE as string, { requireSealed: true })
    expect(trail.ok).toBe(true)
    const notes = readFileSync(env.AGENT_TRUST_AUDIT_FILE as string, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((e) => e.action === 'key')
      .map((e) => e.note)
    expect(notes.join(' ')).toMatch(/generated .*rotated to .*revoked .*no such key/)
  })
})
