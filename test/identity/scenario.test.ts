/** The four-process demo (authority, orchestrator, summarizer, database reader) prints the expected decisions and cleans up. */
import { describe, expect, it } from 'vitest'
import { runIdentityScenario } from '../../examples/identity-scenario.js'

describe('identity scenario (separate processes, mTLS on loopback)', () => {
  it('denies the stolen token and every peer without a valid certificate, and stops its processes', async () => {
    const lines: string[] = []
    await runIdentityScenario((l) => lines.push(l))
    const decision = (label: string) =>
      lines
        .find((l) => l.includes(label))
        ?.trim()
        .replace(/\s+/g, ' ')
    expect(decision('summarizer reads user-123 with a token bound')).toMatch(/^ALLOWED/)
    expect(decision('orchestrator presents the token stolen')).toMatch(/^DENIED .*\[ERR_TOKEN_BINDING\]$/)
    expect(decision('orchestrator reads user-999 with its own token')).toMatch(/^ALLOWED/)
    expect(decision('summarizer reads user-999')).toMatch(/\[ERR_SCOPE_DENIED\]$/)
    expect(decision('a process with no certificate')).toMatch(/^DENIED .*\[ERR_PEER_UNAUTHENTICATED\]$/)
    expect(decision('from another CA')).toMatch(/^DENIED .*\[ERR_PEER_UNAUTHENTICATED\]$/)
    expect(decision('summarizer presents a token minted before the revocation')).toMatch(/^DENIED/)
    expect(decision('summarizer asks the authority for a new token')).toMatch(/^DENIED/)
    // No token is ever printed.
    expect(lines.join('\n')).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/)
  }, 90_000)
})
