/**
 * The on switch: `AGENT_TRUST=enforce` (default), `audit` (decide and
 * log, never block), `off` (no checks; warns loudly at start).
 */
import { ConfigInvalid } from '../errors.js'

export type EnforcementMode = 'enforce' | 'audit' | 'off'

let warnedOff = false

/**
 * Read the mode from an explicit value or `AGENT_TRUST`. An unknown value fails at start
 * rather than silently weakening enforcement.
 */
export function resolveMode(explicit?: unknown, env: NodeJS.ProcessEnv = process.env): EnforcementMode {
  const given = explicit ?? env.AGENT_TRUST ?? 'enforce'
  if (typeof given !== 'string')
    throw new ConfigInvalid('the enforcement mode must be "enforce", "audit" or "off"', { details: { rule: 'mode' } })
  const raw = given.trim().toLowerCase()
  if (raw === '' || raw === 'enforce') return 'enforce'
  if (raw === 'audit') return 'audit'
  if (raw === 'off') {
    if (!warnedOff) {
      warnedOff = true
      console.warn(
        '[agent-trust] WARNING: AGENT_TRUST=off: the adapters (MCP, LangChain, agent HTTP endpoints) and the egress guard check and record nothing: every guarded tool call, sub-agent call and outbound HTTP request goes through. The authority still checks what it mints and spawns, and verifier.verify() still enforces (signature, expiry, replay, scope): only authorize() and the adapters step aside. Never use this in production.',
      )
    }
    return 'off'
  }
  throw new ConfigInvalid('AGENT_TRUST must be "enforce", "audit" or "off"', { details: { rule: 'mode' } })
}

/** For tests: forget that the `off` warning was printed. */
export function resetModeWarning(): void {
  warnedOff = false
}
