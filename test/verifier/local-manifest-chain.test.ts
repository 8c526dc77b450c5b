/**
 * A verifier's own manifest holds every agent a token speaks for: the subject, each actor of
 * an exchanged token and the presenter. The lowest level wins and an agent it does not list
 * is refused, so a principal it restricts cannot act through a helper it lists. Also: verify
 * and authorize without a requirement are a usage error, before the token is read or spent.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { ManifestInput } from 'agent-trust'
import { CONTEXT, makeKernel, MANIFEST } from '../support/kernel.js'

const WRITE = 'db:write:documents:namespace:user-123'

/** The verifier's local view: the same agents, with `levels` overriding theirs, and `drop` left out. */
function localManifest(levels: Record<string, 'L0' | 'L1' | 'L2' | 'L3'>, drop: readonly string[] = []): ManifestInput {
  return {
    ...MANIFEST,
    agents: MANIFEST.agents
      .filter((a) => !drop.includes(a.id))
      .map((a) => (a.id in levels ? { ...a, trustLevel: levels[a.id] as 'L0' | 'L1' | 'L2' | 'L3' } : a)),
  }
}

/** The orchestrator hands a write token to the summarizer, which exchanges it to the database reader. */
async function exchangedWrite(manifest: ManifestInput) {
  const kernel = await makeKernel({ verifier: { manifest } })
  const parent = await kernel.authority.mint({
    subject: 'moltbot-orchestrator',
    audience: 'agent-summarizer-v2',
    scope: [WRITE],
    operation: 'write',
    context: CONTEXT,
    delegationDepth: 1,
  })
  const token = await kernel.authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })
  return { ...kernel, token }
}

describe("the verifier's manifest on every agent of the chain", () => {
  it('refuses a write when the subject is read-only here, though the presenter may write', async () => {
    const { verifier, token } = await exchangedWrite(localManifest({ 'moltbot-orchestrator': 'L1', 'agent-summarizer-v2': 'L3' }))
    await expect(verifier.verify(token, { scope: WRITE, operation: 'write' })).rejects.toMatchObject({
      code: 'ERR_TRUST_LEVEL',
    })
  })

  it('refuses a chain with an agent it does not list, naming it', async () => {
    const { verifier, token } = await exchangedWrite(localManifest({}, ['moltbot-orchestrator']))
    await expect(verifier.verify(token, { scope: WRITE, operation: 'write' })).rejects.toMatchObject({
      code: 'ERR_TRUST_LEVEL',
      details: { agentId: 'moltbot-orchestrator' },
    })
  })

  it('refuses when the presenter is read-only here, and accepts when every agent may write', async () => {
    const low = await exchangedWrite(localManifest({ 'agent-summarizer-v2': 'L1' }))
    await expect(low.verifier.verify(low.token, { scope: WRITE, operation: 'write' })).rejects.toMatchObject({ code: 'ERR_TRUST_LEVEL' })
    const ok = await exchangedWrite(localManifest({}))
    await expect(ok.verifier.verify(ok.token, { scope: WRITE, operation: 'write' })).resolves.toMatchObject({ trustLevel: 'L2' })
  })

  it('the effective level is the lowest of the token and every local level (property)', async () => {
    const order = ['L0', 'L1', 'L2', 'L3'] as const
    const level = fc.constantFrom(...order)
    await fc.assert(
      fc.asyncProperty(level, level, async (sub, presenter) => {
        const { verifier, token } = await exchangedWrite(localManifest({ 'moltbot-orchestrator': sub, 'agent-summarizer-v2': presenter }))
        const expected = order[Math.min(order.indexOf(sub), order.indexOf(presenter), order.indexOf('L2'))] as string
        const r = await verifier.verify(token, { scope: WRITE, operation: 'read' }).catch((e: { code: string }) => e.code)
        if (expected === 'L0') expect(r).toBe('ERR_TRUST_LEVEL')
        else expect(r).toMatchObject({ trustLevel: expected })
      }),
      { numRuns: 16 },
    )
  })
})

describe('verify and authorize without a requirement', () => {
  const bad: Array<[string, unknown]> = [
    ['no requirement', undefined],
    ['null', null],
    ['no scope', { operation: 'read' }],
    ['an empty scope', { scope: '', operation: 'read' }],
    ['no operation', { scope: 'db:read:documents:namespace:user-123' }],
    ['an unknown operation', { scope: 'db:read:documents:namespace:user-123', operation: 'admin' }],
  ]
  for (const [name, requirement] of bad) {
    it(`is a usage error with ${name}, and the token is not spent`, async () => {
      const { verifier, mintRead, read } = await makeKernel()
      const token = await mintRead()
      const call = verifier.verify as (t: unknown, r: unknown) => Promise<unknown>
      await expect(call.call(verifier, token, requirement)).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' })
      const authorize = verifier.authorize as (t: unknown, r: unknown) => Promise<unknown>
      await expect(authorize.call(verifier, token, requirement)).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' })
      await expect(verifier.verify(token, read)).resolves.toBeDefined()
    })
  }
})
