/**
 * The published package holds exactly the compiled library (JavaScript and declarations, no source maps that
 * would point at unshipped TypeScript), its docs, README, LICENSE, SECURITY.md and CHANGELOG.md; every link in
 * the packed docs resolves inside the package.
 */
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
let stage = ''
let files: string[] = []

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name)
    return statSync(full).isDirectory() ? walk(full) : [relative(root, full).split('\\').join('/')]
  })
}

beforeAll(() => {
  stage = mkdtempSync(join(tmpdir(), 'agent-trust-pack-'))
  for (const f of ['package.json', 'README.md', 'LICENSE', 'SECURITY.md', 'CHANGELOG.md', 'docs'])
    cpSync(join(root, f), join(stage, f), { recursive: true })
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')],
    {
      cwd: root,
      stdio: 'pipe',
    },
  )
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: stage,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  files = (JSON.parse(out)[0].files as { path: string }[]).map((f) => f.path).sort()
}, 240_000)

afterAll(() => {
  if (stage) rmSync(stage, { recursive: true, force: true })
})

describe('npm pack', () => {
  it('holds exactly the compiled sources, the docs and the top-level files', () => {
    const sources = [...walk(join(root, 'src')), ...walk(join(root, 'adapters'))].filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    const compiled = sources.flatMap((f) => [`dist/${f.replace(/\.ts$/, '.js')}`, `dist/${f.replace(/\.ts$/, '.d.ts')}`])
    const docs = readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`)
    const expected = [...compiled, ...docs, 'README.md', 'LICENSE', 'SECURITY.md', 'CHANGELOG.md', 'package.json'].sort()
    expect(files).toEqual(expected)
    // Every part's reference ships.
    for (const d of ['architecture', 'audit', 'cli', 'egress', 'identity', 'langchain', 'mcp', 'sandbox', 'stores'])
      expect(files).toContain(`docs/${d}.md`)
  })

  it('ships no source maps and no TypeScript sources', () => {
    expect(files.filter((f) => f.endsWith('.map') || (f.endsWith('.ts') && !f.endsWith('.d.ts')))).toEqual([])
  })

  it('the LICENSE is the Apache-2.0 text the manifest declares', () => {
    expect(pkg.license).toBe('Apache-2.0')
    const text = readFileSync(join(root, 'LICENSE'), 'utf8')
    expect(text).toContain('Apache License')
    expect(text).toContain('Version 2.0, January 2004')
    expect(text).toContain('END OF TERMS AND CONDITIONS')
  })

  it('every export target and bin is in the package', () => {
    const targets: string[] = []
    for (const t of Object.values<any>(pkg.exports)) {
      if (typeof t === 'string') targets.push(t)
      else targets.push(t.types, t.default)
    }
    targets.push(...Object.values<string>(pkg.bin), pkg.imports['#internal'].default, pkg.imports['#internal'].types)
    for (const t of targets) expect(files, t).toContain(posix.normalize(t))
  })

  it('every relative link in the packed README and docs resolves to a packed file', () => {
    const broken: string[] = []
    for (const doc of files.filter((f) => f.endsWith('.md'))) {
      const text = readFileSync(join(root, doc), 'utf8')
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const href = (m[1] as string).split('#')[0] as string
        if (href === '' || /^[a-z]+:/i.test(href)) continue
        const target = posix.normalize(posix.join(dirname(doc), href))
        if (!files.includes(target)) broken.push(`${doc} -> ${m[1]}`)
      }
    }
    expect(broken).toEqual([])
  })
})
