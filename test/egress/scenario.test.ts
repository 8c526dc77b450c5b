import { expect, it } from 'vitest'
import { runEgressScenario } from '../../examples/egress-scenario.js'

it('the npm start egress scenario: the declared read passes, every exfiltration attempt is denied with its code', async () => {
  const lines: string[] = []
  const { audit } = await runEgressScenario((l) => lines.push(l))
  const allowed = lines.filter((l) => l.includes('ALLOWED'))
  const denied = lines.filter((l) => l.includes('DENIED'))
  expect(allowed).toHaveLength(1)
  expect(allowed[0]).toContain('status 200')
  expect(denied.length).toBeGreaterThanOrEqual(6)
  expect(denied.filter((l) => l.includes('ERR_EGRESS_DENIED')).length).toBe(denied.length - 1)
  expect(denied.at(-1)).toContain('ERR_TOKEN_MISSING')
  expect(lines.at(-1)).toContain('received 0 request(s)')
  expect(audit.events.some((e) => e.action === 'agent_call' && e.decision === 'allow')).toBe(true)
  expect(JSON.stringify(audit.events)).not.toMatch(/eyJ[\w-]+\.eyJ/)
})
