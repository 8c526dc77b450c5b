/** `npm start` must keep working: run the demo as a user would and read what it prints. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const DECISION = /^\s*(ALLOWED|DENIED)\s/
let stdout = ''

function count(lines: string[]): { allowed: number; denied: number } {
  const decisions = lines.map((l) => DECISION.exec(l)?.[1]).filter((d) => d !== undefined)
  return { allowed: decisions.filter((d) => d === 'ALLOWED').length, denied: decisions.filter((d) => d === 'DENIED').length }
}

beforeAll(async () => {
  ;({ stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=agent-trust-source', 'examples/demo.ts'], {
    cwd: new URL('..', import.meta.url).pathname,
    timeout: 120_000,
    env: { ...process.env, AGENT_TRUST: 'enforce' },
  }))
}, 180_000)

describe('npm start (the seed scenario)', () => {
  it('runs every section, allows the legitimate calls and denies each attack with a code', () => {
    for (const n of [1, 2, 3, 4, 5, 6, 7]) expect(stdout).toMatch(new RegExp(`== ${n}\\. `))
    expect(stdout).not.toMatch(/unexpected/i)
    // the seed's attacks, each denied with its code
    expect(stdout).toMatch(/DENIED +summarizer asks for a token for user-999 +\[ERR_SCOPE_DENIED\]/)
    expect(stdout).toMatch(/DENIED +summarizer spawns a sub-agent +\[ERR_SPAWN_DENIED\]/)
    expect(stdout).toMatch(/DENIED +summarizer replays its used token +\[ERR_TOKEN_REPLAYED\]/)
    expect(stdout).toMatch(/DENIED +summarizer uses a token minted before the revocation +\[ERR_AGENT_REVOKED\]/)
    expect(stdout).toMatch(/DENIED .*not its own\) +\[ERR_SCOPE_ESCALATION\]/)
    expect(stdout).toMatch(/DENIED +POST https:\/\/external-api\.com\/upload.*\[ERR_EGRESS_DENIED/)
    expect(stdout).toMatch(/DENIED +orchestrator presents the token stolen from the summarizer +\[ERR_TOKEN_BINDING\]/)
    expect(stdout).toMatch(/external-api\.com received 0 request/)
    // and the legitimate read goes through on every transport
    expect((stdout.match(/ALLOWED +summarizer reads user-123/g) ?? []).length).toBeGreaterThanOrEqual(2)
  })

  it('the summary counts exactly the ALLOWED and DENIED lines printed, in total and per section', () => {
    const lines = stdout.split('\n')
    const total = count(lines)
    expect(total.allowed).toBeGreaterThan(0)
    expect(total.denied).toBeGreaterThan(0)
    const summary = /^Summary: (\d+) attempts \((\d+) allowed, (\d+) denied\) printed above/m.exec(stdout)
    expect(summary, 'summary line').not.toBeNull()
    expect(summary?.slice(1).map(Number)).toEqual([total.allowed + total.denied, total.allowed, total.denied])
    // Per section: the lines between one "== n." heading and the next.
    const bySection = /^By section: (.*)\.$/m.exec(stdout)?.[1] ?? ''
    const starts = lines.flatMap((l, i) => (/^== \d+\. /.test(l) ? [i] : []))
    const end = lines.findIndex((l) => l.startsWith('Summary: '))
    const expected = starts
      .map((s, k) => ({ n: k + 1, ...count(lines.slice(s, starts[k + 1] ?? end)) }))
      .map((c) => `${c.n}. ${c.allowed} allowed, ${c.denied} denied`)
      .join('; ')
    expect(bySection).toBe(expected)
  })

  it("the identity section's own count matches its lines", () => {
    const lines = stdout.split('\n')
    const from = lines.findIndex((l) => l.startsWith('== 7. '))
    const at = lines.findIndex((l, i) => i > from && / attempts \(\d+ allowed, \d+ denied\) above;/.test(l))
    expect(at).toBeGreaterThan(from)
    const c = count(lines.slice(from, at))
    expect(lines[at]).toContain(`${c.allowed + c.denied} attempts (${c.allowed} allowed, ${c.denied} denied) above;`)
  })
})
