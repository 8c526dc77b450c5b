/** `npm start` must keep working: run the demo as a user would and read what it prints. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('npm start (the seed scenario)', () => {
  it('runs every section, allows the legitimate calls and denies each attack with a code', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=agent-trust-source', 'examples/demo.ts'], {
      cwd: new URL('..', import.meta.url).pathname,
      timeout: 120_000,
      env: { ...process.env, AGENT_TRUST: 'enforce' },
    })
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
  }, 180_000)
})
