/**
 * The human-in-the-loop gate, on a real terminal: `trust approve` runs in a pseudo-terminal
 * (tmux), and the screen tmux renders is what the operator would read. A request whose
 * reason and requester carry cursor movement, line erasure, colour and bidi controls (as a
 * store written by another tool could hold) must show as escaped text, and the line right
 * above the prompt must be the computed "RAISING ... from L1 to L3".
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { MAIN } from '../support/cli.js'

const hasTmux = spawnSync('tmux', ['-V']).status === 0
const dir = mkdtempSync(join(tmpdir(), 'agent-trust-approve-screen-'))
const session = `agent-trust-approve-${process.pid}`
afterAll(() => {
  spawnSync('tmux', ['kill-session', '-t', session])
  rmSync(dir, { recursive: true, force: true })
})

const screen = () => execFileSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' })

async function waitFor(pred: (s: string) => boolean, ms = 20_000): Promise<string> {
  const until = Date.now() + ms
  for (;;) {
    const s = screen()
    if (pred(s)) return s
    if (Date.now() > until) throw new Error(`screen never matched; it shows:\n${s}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

it.skipIf(!hasTmux && process.env.CI !== 'true')(
  'shows a hostile reason as text and the computed RAISING line last, above the prompt',
  async () => {
    const id = randomUUID()
    // Up two lines, erase them, and paint a benign-looking question; then a bidi override.
    const reason = '\u001b[2A\u001b[2K\u001b[1G\u001b[32mApprove lowering summ from L1 to L0?\u001b[0m\u001b[1B\u001b[2K\u202eL0 ot'
    const store = join(dir, 'trust.json')
    writeFileSync(
      store,
      JSON.stringify({
        version: 1,
        requests: [
          {
            id,
            agentId: 'agent-summarizer-v2',
            from: 'L1',
            to: 'L3',
            reason,
            requestedBy: 'spiffe://example/operator/alice\u001b[2K',
            createdAt: new Date().toISOString(),
            status: 'pending',
          },
        ],
      }),
      { mode: 0o600 },
    )
    const tsx = import.meta.resolve('tsx')
    const command = [process.execPath, '--import', tsx, '--conditions=agent-trust-source', MAIN, 'trust', 'approve', id, '--store', store]
      .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
      .join(' ')
    execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '200', '-y', '40', `cd '${dir}' && ${command}; sleep 30`], {
      env: { ...process.env, AGENT_TRUST_OPERATOR: 'bob', TERM: 'xterm' },
    })
    const shown = await waitFor((s) => s.includes('Type "yes" to approve'))
    const lines = shown.split('\n').filter((l) => l.trim() !== '')
    const prompt = lines.findIndex((l) => l.includes('Type "yes" to approve'))
    expect(lines[prompt - 1]).toBe('Approving this is RAISING agent-summarizer-v2 from L1 to L3.')
    // The attempt is visible as text, not acted on: the painted question is on the reason line.
    expect(shown).toContain('\\u{1b}[2A')
    expect(shown).toContain('\\u{202e}')
    expect(lines.filter((l) => l.includes('Approve lowering'))).toHaveLength(1)
    expect(lines.find((l) => l.includes('Approve lowering'))).toMatch(/^ {2}reason: /)
    execFileSync('tmux', ['send-keys', '-t', session, 'no', 'Enter'])
    const after = await waitFor((s) => s.includes('not approved'))
    expect(after).toContain('ERR_TRUST_CHANGE_DENIED')
  },
)
