/** The root entry stays free of optional peers; every declared subpath resolves. */
import { readFileSync, existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
const root = new URL('../../', import.meta.url)

function importsOf(file: URL, seen = new Set<string>()): Set<string> {
  if (seen.has(file.href)) return seen
  seen.add(file.href)
  const text = readFileSync(file, 'utf8')
  for (const m of text.matchAll(/^(?:import|export)[^'"]*from\s+'([^']+)'/gm)) {
    const spec = m[1] as string
    if (spec.startsWith('.')) importsOf(new URL(spec.replace(/\.js$/, '.ts'), file), seen)
    else seen.add(spec)
  }
  return seen
}

describe('package surface', () => {
  it('the root entry never imports undici, ioredis, the MCP SDK or LangChain', () => {
    const deps = [...importsOf(new URL('src/index.ts', root))].filter((s) => !s.startsWith('file:'))
    for (const banned of ['undici', 'ioredis', '@modelcontextprotocol/sdk', 'langchain', '@langchain/core']) {
      expect(
        deps.some((d) => d === banned || d.startsWith(`${banned}/`)),
        banned,
      ).toBe(false)
    }
  })

  it('every subpath in exports points at an existing source file', () => {
    for (const [sub, target] of Object.entries<any>(pkg.exports)) {
      if (typeof target === 'string') continue
      expect(existsSync(new URL(target['agent-trust-source'], root)), sub).toBe(true)
    }
  })

  it('runtime dependencies are jose and zod only; frameworks are optional peers', () => {
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['jose', 'zod'])
    for (const peer of Object.keys(pkg.peerDependencies)) expect(pkg.peerDependenciesMeta[peer]?.optional).toBe(true)
  })
})
