// Any console output during a test fails it: a stray log line is how tokens leak.
// Tests that expect output (the `off` warning, the CLI) spy on console themselves.
import { afterEach, beforeEach, vi } from 'vitest'

const methods = ['log', 'info', 'warn', 'error', 'debug'] as const
let calls: string[] = []

beforeEach(() => {
  calls = []
  for (const m of methods) {
    vi.spyOn(console, m).mockImplementation((...args: unknown[]) => {
      const line = args.map(String).join(' ')
      // The one documented line: the warning that AGENT_TRUST=off prints once per process.
      if (m === 'warn' && line.startsWith('[agent-trust] WARNING: AGENT_TRUST=off')) return
      calls.push(`console.${m}: ${line.slice(0, 200)}`)
    })
  }
})

afterEach((ctx) => {
  const allowed = (ctx.task.meta as { allowConsole?: boolean }).allowConsole === true
  vi.restoreAllMocks()
  if (calls.length > 0 && !allowed) {
    throw new Error(`unexpected console output in test:\n${calls.join('\n')}`)
  }
})
