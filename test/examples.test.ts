/**
 * examples/README.md says any example runs with `npx tsx --conditions=agent-trust-source
 * examples/<file>.ts`: each one does, exits 0 and prints what it shows. (`npm start`,
 * examples/demo.ts, is read line by line in demo.test.ts.)
 */
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = new URL('..', import.meta.url).pathname
/** Modules the examples share, or start as child processes: not programs of their own. */
const HELPERS = ['print.ts', 'seed-manifest.ts', 'identity-ipc.ts', 'identity-agent-process.ts', 'identity-authority-process.ts']
/**
 * Run by their own suites: demo.ts (read line by line in demo.test.ts) and sandbox-spawn.ts (in
 * test/sandbox, which compares the kernel's network objects before and after, so no other file
 * may create sandboxes while it runs).
 */
const OWN_SUITE = ['demo.ts', 'sandbox-spawn.ts']
const examples = readdirSync(new URL('../examples/', import.meta.url)).filter(
  (f) => f.endsWith('.ts') && !HELPERS.includes(f) && !OWN_SUITE.includes(f),
)

describe('examples', () => {
  it('the README lists every example program', () => {
    const readme = readFileSync(new URL('../examples/README.md', import.meta.url), 'utf8')
    for (const f of [...examples, ...OWN_SUITE]) expect(readme, f).toContain(`[${f}](${f})`)
  })

  it.each(examples)(
    '%s runs, prints what it shows and exits 0',
    async (file) => {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=agent-trust-source', `examples/${file}`], {
        cwd: root,
        timeout: 120_000,
        env: { ...process.env, AGENT_TRUST: 'enforce' },
      })
      const lines = stdout.split('\n').filter((l) => l.trim() !== '')
      expect(lines.length, stdout).toBeGreaterThanOrEqual(2)
      expect(stdout).not.toMatch(/unexpected/i)
    },
    150_000,
  )
})
