/**
 * One set of limits: the authority never mints a token a verifier would refuse. Any request
 * within the per-claim limits either mints a token that verifies, or is refused at mint with
 * `ERR_REQUEST_INVALID` (rule `token-size`) when the whole token would exceed 8 KiB.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  Authority,
  createVerifier,
  MAX_CONTEXT_VALUE_LENGTH,
  MAX_SCOPES_PER_TOKEN,
  MAX_TOKEN_BYTES,
  MemoryReplayRevocationStore,
} from 'agent-trust'

const MANIFEST = {
  authority: { id: 'limits-authority' },
  agents: [
    { id: 'wide-agent', trustLevel: 'L2' as const, grants: ['a:*:*:*'] },
    { id: 'limits-server', trustLevel: 'L2' as const },
  ],
}

const segment = fc.stringMatching(/^[A-Za-z0-9._@/+-]{1,64}$/)
const longSegment = fc.stringMatching(/^[A-Za-z0-9._@/+-]{48,64}$/)
const scope = fc.tuple(segment, segment, segment).map(([x, y, z]) => `a:${x}:${y}:${z}`)
const longScope = fc.tuple(longSegment, longSegment, longSegment).map(([x, y, z]) => `a:${x}:${y}:${z}`)
/** Small requests, and requests near the limits, where a size disagreement would show. */
const scopes = fc.oneof(
  fc.uniqueArray(scope, { minLength: 1, maxLength: MAX_SCOPES_PER_TOKEN }),
  fc.uniqueArray(longScope, { minLength: 20, maxLength: MAX_SCOPES_PER_TOKEN }),
)
const contextValue = fc.oneof(fc.string({ maxLength: 16 }), fc.string({ minLength: 200, maxLength: MAX_CONTEXT_VALUE_LENGTH }))

describe('mint and verify agree on every limit', () => {
  it('every token the authority mints verifies; what would be too large is refused at mint (property)', async () => {
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest: MANIFEST, store })
    const verifier = createVerifier({ id: 'limits-server', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
    let minted = 0
    let refused = 0
    await fc.assert(
      fc.asyncProperty(scopes, contextValue, contextValue, contextValue, async (asked, session_id, user_id, task_id) => {
        let token: string
        try {
          token = await authority.mint({
            subject: 'wide-agent',
            audience: 'limits-server',
            scope: asked,
            operation: 'read',
            context: { session_id, user_id, task_id },
          })
        } catch (e) {
          expect(e).toMatchObject({ code: 'ERR_REQUEST_INVALID', details: { rule: 'token-size' } })
          refused++
          return
        }
        minted++
        expect(token.length).toBeLessThanOrEqual(MAX_TOKEN_BYTES)
        await expect(verifier.verify(token, { scope: asked[0] as string, operation: 'read' })).resolves.toBeDefined()
      }),
      { numRuns: 120 },
    )
    // Both outcomes were exercised: the property is not vacuous.
    expect(minted).toBeGreaterThan(0)
    expect(refused).toBeGreaterThan(0)
  })

  it('a token at the documented maximum verifies: 32 scopes and 256-character context values that fit 8 KiB', async () => {
    const store = new MemoryReplayRevocationStore()
    const authority = await Authority.create({ manifest: MANIFEST, store })
    const verifier = createVerifier({ id: 'limits-server', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
    const v = 'v'.repeat(MAX_CONTEXT_VALUE_LENGTH)
    const scopes = Array.from({ length: MAX_SCOPES_PER_TOKEN }, (_, i) => `a:${'s'.repeat(40)}:${i}:x`)
    const token = await authority.mint({
      subject: 'wide-agent',
      audience: 'limits-server',
      scope: scopes,
      operation: 'read',
      context: { session_id: v, user_id: v, task_id: v },
    })
    expect(token.length).toBeGreaterThan(3500)
    await expect(verifier.verify(token, { scope: scopes[31] as string, operation: 'read' })).resolves.toBeDefined()
    // One character more per context value is refused at mint, by the claim's own limit.
    await expect(
      authority.mint({
        subject: 'wide-agent',
        audience: 'limits-server',
        scope: scopes,
        operation: 'read',
        context: { session_id: `${v}v`, user_id: v, task_id: v },
      }),
    ).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_/) })
  })
})

describe('context values are plain text', () => {
  it('refuses control, bidi and invisible characters in context at mint (property)', async () => {
    const authority = await Authority.create({ manifest: MANIFEST })
    const hostile = fc
      .tuple(
        fc.string({ maxLength: 10 }),
        fc.constantFrom('\u001b[2K', '\u009b', '\u202e', '\u200b', '\u0000', '\r\n', '\u{e0041}'),
        fc.string({ maxLength: 10 }),
      )
      .map(([a, c, b]) => `${a}${c}${b}`)
    await fc.assert(
      fc.asyncProperty(hostile, fc.constantFrom('session_id', 'user_id', 'task_id'), async (value, key) => {
        const context = { session_id: 's', user_id: 'u', task_id: 't', [key]: value }
        await expect(
          authority.mint({ subject: 'wide-agent', audience: 'limits-server', scope: ['a:b:c:d'], operation: 'read', context }),
        ).rejects.toMatchObject({ code: 'ERR_TOKEN_CLAIMS' })
      }),
      { numRuns: 60 },
    )
  })
})
