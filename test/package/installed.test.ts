/**
 * The packed package, installed into an empty ESM app the way a user installs it (`npm install
 * <tarball>`, no optional peer dependency): a subpath or a command that needs a missing peer
 * fails with one line that names the subpath and the `npm install` to run.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
let stage = ''
let app = ''

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function run(file: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(file, args, { cwd: app, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

beforeAll(() => {
  stage = mkdtempSync(join(tmpdir(), 'agent-trust-stage-'))
  app = mkdtempSync(join(tmpdir(), 'agent-trust-app-'))
  for (const f of ['package.json', 'README.md', 'LICENSE', 'SECURITY.md', 'CHANGELOG.md', 'docs'])
    cpSync(join(root, f), join(stage, f), { recursive: true })
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')],
    { cwd: root, stdio: 'pipe' },
  )
  npm(['pack', '--silent', '--ignore-scripts', '--pack-destination', app], stage)
  const tarball = readdirSync(app).find((f) => f.endsWith('.tgz')) as string
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', `./${tarball}`], app)
}, 300_000)

afterAll(() => {
  for (const d of [stage, app]) if (d) rmSync(d, { recursive: true, force: true })
}, 120_000)

/** The subpaths that need an optional peer, and the peers each one names when none is installed. */
const NEEDS: Record<string, string[]> = {
  'agent-trust/egress': ['undici', 'ipaddr.js'],
  'agent-trust/sandbox': ['ipaddr.js'],
  'agent-trust/identity': ['@peculiar/x509'],
  'agent-trust/authority-service': ['undici', '@peculiar/x509'],
  'agent-trust/revocation/redis': ['ioredis'],
  'agent-trust/keys/redis': ['ioredis'],
  'agent-trust/audit/redis': ['ioredis'],
  'agent-trust/mcp': ['@modelcontextprotocol/sdk'],
  'agent-trust/langchain': ['@langchain/core', 'langchain'],
  'agent-trust/langchain/http': ['@langchain/core', 'undici', 'ipaddr.js'],
}

describe('installed without optional peers', () => {
  it('installs none of them', () => {
    const installed = readdirSync(join(app, 'node_modules')).flatMap((d) =>
      d.startsWith('@') ? readdirSync(join(app, 'node_modules', d)).map((s) => `${d}/${s}`) : [d],
    )
    for (const peer of Object.keys(pkg.peerDependencies)) expect(installed, peer).not.toContain(peer)
  })

  it('the subpaths without peers load', () => {
    const free = Object.keys(pkg.exports)
      .filter((k) => k !== './package.json')
      .map((k) => `agent-trust${k.slice(1)}`)
      .filter((s) => NEEDS[s] === undefined)
    expect(free.sort()).toEqual(['agent-trust', 'agent-trust/audit', 'agent-trust/errors', 'agent-trust/http'])
    const r = run(process.execPath, ['--input-type=module', '-e', `for (const s of ${JSON.stringify(free)}) await import(s)`])
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })

  it('every subpath that needs a peer is listed here', () => {
    const listed = Object.keys(pkg.exports)
      .filter((k) => k !== './package.json')
      .map((k) => `agent-trust${k.slice(1)}`)
      .filter((s) => NEEDS[s] !== undefined)
    expect(listed.sort()).toEqual(Object.keys(NEEDS).sort())
  })

  it.each(Object.entries(NEEDS))('import("%s") fails with one line naming the subpath and the npm install', (subpath, peers) => {
    const r = run(process.execPath, ['-e', `import(${JSON.stringify(subpath)})`])
    expect(r.status).toBe(1)
    const named = r.stderr.split('\n').filter((l) => l.includes('npm install'))
    expect(named).toEqual([
      `DependencyMissing: ${subpath} needs the optional peer ${peers.length === 1 ? 'dependency' : 'dependencies'} ${peers
        .map((p) => `"${p}"`)
        .join(' and ')}, not installed: run \`npm install ${peers.join(' ')}\``,
    ])
    expect(r.stderr).toContain("code: 'ERR_DEPENDENCY_MISSING'")
    // No loader error about a file inside the package: the user sees what to install, nothing else.
    expect(r.stderr).not.toMatch(/Cannot find (package|module)/)
  })

  it('the error is typed: code, details and a one-line message', () => {
    const r = run(process.execPath, [
      '--input-type=module',
      '-e',
      `try { await import('agent-trust/mcp') } catch (e) { console.log(JSON.stringify({ code: e.code, details: e.details, lines: e.message.split('\\n').length, branded: (await import('agent-trust')).isAgentTrustError(e) })) }`,
    ])
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toEqual({
      code: 'ERR_DEPENDENCY_MISSING',
      details: { subpath: 'agent-trust/mcp', packages: '@modelcontextprotocol/sdk' },
      lines: 1,
      branded: true,
    })
  })

  it('agent-trust-mcp-gateway prints one line naming the MCP SDK and exits 1', () => {
    const r = run(join(app, 'node_modules/.bin/agent-trust-mcp-gateway'), ['--server-id', 'x', '--', 'true'])
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe(
      'agent-trust-mcp-gateway: agent-trust-mcp-gateway needs the optional peer dependency "@modelcontextprotocol/sdk", not installed: run `npm install @modelcontextprotocol/sdk` [ERR_DEPENDENCY_MISSING]\n',
    )
  })

  it('agent-trust runs its commands that need no peer, and names the peer of one that does in one line', () => {
    const help = run(join(app, 'node_modules/.bin/agent-trust'), ['--help'])
    expect(help.status).toBe(0)
    expect(help.stderr).toBe('')
    const gc = run(join(app, 'node_modules/.bin/agent-trust'), ['sandbox', 'gc'])
    expect(gc.status).toBe(1)
    expect(gc.stderr).toBe(
      'agent-trust: agent-trust/sandbox needs the optional peer dependency "ipaddr.js", not installed: run `npm install ipaddr.js` [ERR_DEPENDENCY_MISSING]\n',
    )
  })
})
