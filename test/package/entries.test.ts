/**
 * The published entry of a subpath that needs an optional peer re-exports exactly its
 * implementation's names, and a missing peer becomes one typed `ERR_DEPENDENCY_MISSING` line.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DependencyMissing, isAgentTrustError } from 'agent-trust'
import { dependencyMissing, loadWithPeers, missingPeers, peerInstalled } from '../../src/lib/peer.js'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
const root = new URL('../../', import.meta.url)
const guarded = Object.entries<any>(pkg.exports).filter(
  ([, t]) => typeof t === 'object' && t.default.replace(/\.js$/, '.d.ts') !== t.types,
) as [string, { 'agent-trust-source': string; types: string; default: string }][]

describe('guarded subpath entries', () => {
  it('cover every subpath that needs a peer', () => {
    expect(guarded.map(([k]) => k).sort()).toEqual(
      [
        './audit/redis',
        './authority-service',
        './egress',
        './identity',
        './keys/redis',
        './langchain',
        './langchain/http',
        './mcp',
        './revocation/redis',
        './sandbox',
      ].sort(),
    )
  })

  it.each(guarded)('%s: the entry exports exactly the implementation names, the same values', async (_sub, t) => {
    const entry = await import(new URL(t.default.replace(/^\.\/dist\//, './').replace(/\.js$/, '.ts'), root).href)
    const impl = await import(new URL(t['agent-trust-source'], root).href)
    expect(Object.keys(entry).sort()).toEqual(Object.keys(impl).sort())
    for (const k of Object.keys(impl)) expect(entry[k], k).toBe(impl[k])
    // The types users see are the implementation's declarations.
    expect(t.types).toBe(t['agent-trust-source'].replace(/^\.\//, './dist/').replace(/\.ts$/, '.d.ts'))
  })
})

describe('loadWithPeers', () => {
  it('tells installed from missing packages, including one whose exports hide package.json', () => {
    expect(peerInstalled('undici')).toBe(true)
    expect(peerInstalled('@modelcontextprotocol/sdk')).toBe(true)
    expect(missingPeers(['undici', 'agent-trust-no-such-package', 'ioredis'])).toEqual(['agent-trust-no-such-package'])
  })

  it('a missing peer becomes ERR_DEPENDENCY_MISSING: one line, the subpath, the npm install, no cause', async () => {
    const err = await loadWithPeers(
      'agent-trust/example',
      ['undici', 'agent-trust-no-such-package'],
      () => import('agent-trust-no-such-package' as string),
    ).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DependencyMissing)
    expect(isAgentTrustError(err)).toBe(true)
    const e = err as DependencyMissing
    expect(e.code).toBe('ERR_DEPENDENCY_MISSING')
    expect(e.message).toBe(
      'agent-trust/example needs the optional peer dependency "agent-trust-no-such-package", not installed: run `npm install agent-trust-no-such-package`',
    )
    expect(e.details).toEqual({ subpath: 'agent-trust/example', packages: 'agent-trust-no-such-package' })
    expect(e.cause).toBeUndefined()
  })

  it('names every missing package in one command', () => {
    expect(dependencyMissing('agent-trust/langchain', ['@langchain/core', 'langchain']).message).toBe(
      'agent-trust/langchain needs the optional peer dependencies "@langchain/core" and "langchain", not installed: run `npm install @langchain/core langchain`',
    )
  })

  it('a module-not-found for anything but a listed peer is rethrown as it is', async () => {
    const err = await loadWithPeers('agent-trust/example', ['undici'], () => import('agent-trust-no-such-package' as string)).catch(
      (e: unknown) => e,
    )
    expect(isAgentTrustError(err)).toBe(false)
    expect((err as { code?: string }).code).toMatch(/MODULE_NOT_FOUND/)
  })

  it('any other failure is rethrown as it is, and success returns the module', async () => {
    const boom = new SyntaxError('does not provide an export named X')
    await expect(loadWithPeers('agent-trust/example', ['agent-trust-no-such-package'], () => Promise.reject(boom))).rejects.toBe(boom)
    await expect(loadWithPeers('agent-trust/example', [], () => Promise.resolve(42))).resolves.toBe(42)
  })
})
