/**
 * The declarations of every subpath type-check in a user's strict project (`skipLibCheck:
 * false`, `module: nodenext`) with only the peers that subpath needs installed: the MCP
 * types need no X.509 library or undici, the root needs no peer at all.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
const tsc = join(root, 'node_modules/typescript/bin/tsc')
let stage = ''
let tarball = ''

/** The version this repository tests with, so the install comes from the local npm cache. */
const pinned = (name: string): string =>
  `${name}@${JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version}`

/** One consumer per group of subpaths: what it imports, and the peers installed beside it. */
const GROUPS: Record<string, { subpaths: string[]; peers: string[] }> = {
  root: { subpaths: ['agent-trust', 'agent-trust/errors', 'agent-trust/audit', 'agent-trust/http'], peers: [] },
  egress: { subpaths: ['agent-trust/egress', 'agent-trust/sandbox'], peers: ['undici', 'ipaddr.js'] },
  // The declarations name the types of both SDK majors (a guarded server or client may be either).
  mcp: {
    subpaths: ['agent-trust/mcp'],
    peers: ['@modelcontextprotocol/sdk', '@modelcontextprotocol/server', '@modelcontextprotocol/client', '@modelcontextprotocol/node'],
  },
  langchain: { subpaths: ['agent-trust/langchain'], peers: ['@langchain/core', 'langchain'] },
  'langchain-http': { subpaths: ['agent-trust/langchain/http'], peers: ['@langchain/core', 'undici', 'ipaddr.js'] },
  redis: { subpaths: ['agent-trust/revocation/redis', 'agent-trust/keys/redis', 'agent-trust/audit/redis'], peers: ['ioredis'] },
  identity: { subpaths: ['agent-trust/identity', 'agent-trust/authority-service'], peers: ['@peculiar/x509', 'undici'] },
}

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

beforeAll(() => {
  stage = mkdtempSync(join(tmpdir(), 'agent-trust-types-'))
  for (const f of ['package.json', 'README.md', 'LICENSE', 'SECURITY.md', 'CHANGELOG.md', 'docs'])
    cpSync(join(root, f), join(stage, f), { recursive: true })
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')], {
    cwd: root,
    stdio: 'pipe',
  })
  npm(['pack', '--silent', '--ignore-scripts', '--pack-destination', stage], stage)
  tarball = join(stage, readdirSync(stage).find((f) => f.endsWith('.tgz')) as string)
}, 300_000)

afterAll(() => {
  if (stage) rmSync(stage, { recursive: true, force: true })
}, 120_000)

describe('declarations in a strict consumer (skipLibCheck false)', () => {
  it('every subpath is in one group', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
    const all = Object.keys(pkg.exports)
      .filter((k) => k !== './package.json')
      .map((k) => `agent-trust${k.slice(1)}`)
    expect(
      Object.values(GROUPS)
        .flatMap((g) => g.subpaths)
        .sort(),
    ).toEqual(all.sort())
  })

  it.each(Object.entries(GROUPS))(
    '%s: type-checks with only its peers installed',
    (name, group) => {
      const app = join(stage, `app-${name}`)
      mkdirSync(app)
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: `consumer-${name}`, private: true, type: 'module' }))
      npm(
        [
          'install',
          '--prefer-offline',
          '--no-audit',
          '--no-fund',
          '--ignore-scripts',
          tarball,
          pinned('@types/node'),
          ...group.peers.map(pinned),
        ],
        app,
      )
      const installed = readdirSync(join(app, 'node_modules')).flatMap((d) =>
        d.startsWith('@') ? readdirSync(join(app, 'node_modules', d)).map((s) => `${d}/${s}`) : [d],
      )
      const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
      // ipaddr.js and reflect-metadata also arrive as dependencies of the MCP SDK (through express)
      // and of @peculiar/x509; no declaration of agent-trust names either.
      const absent = Object.keys(pkg.peerDependencies).filter(
        (p) => !group.peers.includes(p) && p !== 'ipaddr.js' && p !== 'reflect-metadata',
      )
      for (const peer of absent) expect(installed, `${peer} must not be installed`).not.toContain(peer)
      // A namespace import pulls in every declaration the subpath publishes.
      const lines = group.subpaths.map((s, i) => `import * as m${i} from '${s}'`)
      lines.push(`export const loaded: object[] = [${group.subpaths.map((_, i) => `m${i}`).join(', ')}]`)
      if (name === 'root') lines.push(`export const code: m1.AgentTrustErrorCode = 'ERR_DEPENDENCY_MISSING'`)
      writeFileSync(join(app, 'consumer.ts'), `${lines.join('\n')}\n`)
      const r = spawnSync(
        process.execPath,
        [tsc, '--strict', '--skipLibCheck', 'false', '--module', 'nodenext', '--noEmit', '--types', 'node', 'consumer.ts'],
        { cwd: app, encoding: 'utf8' },
      )
      expect(r.stdout + r.stderr).toBe('')
      expect(r.status).toBe(0)
    },
    300_000,
  )
})
