/**
 * Misuse is named as misuse: a call without its request object, `args` that are not an object,
 * and a typo in a spawned child's declaration each get a coded error that says what to fix,
 * not a denial that reads like an attack ("escalation") or an internal failure.
 */
import { describe, expect, it } from 'vitest'
import { Authority, createVerifier } from 'agent-trust'
import { CONTEXT, MANIFEST } from '../support/kernel.js'

describe('authority misuse', () => {
  it('a missing or non-object request is ERR_REQUEST_INVALID naming the method', async () => {
    const a = await Authority.create({ manifest: MANIFEST })
    for (const bad of [null, undefined, 'x', 1, []])
      for (const m of ['mint', 'mintForTool', 'exchange', 'spawn'] as const) {
        const call = a[m] as (r: unknown) => Promise<unknown>
        await expect(call.call(a, bad)).rejects.toMatchObject({
          code: 'ERR_REQUEST_INVALID',
          message: expect.stringContaining(`authority.${m}()`),
        })
      }
  })

  it('mintForTool with args that are not an object is ERR_REQUEST_INVALID', async () => {
    const a = await Authority.create({ manifest: MANIFEST })
    for (const args of [null, 'ns', 7, ['user-123']])
      await expect(
        a.mintForTool({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          tool: 'read_documents',
          args,
          context: CONTEXT,
        } as never),
      ).rejects.toMatchObject({ code: 'ERR_REQUEST_INVALID', details: { rule: 'args' } })
  })

  it('a typo in a spawned child names the unknown key, and an escalation stays an escalation', async () => {
    const a = await Authority.create({ manifest: MANIFEST })
    await expect(a.spawn({ parent: 'moltbot-orchestrator', child: { id: 'c-typo', trustlevel: 'L1' } as never })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      details: { rule: 'unknown-key' },
      message: expect.stringContaining('did you mean "trustLevel"'),
    })
    await expect(a.spawn({ parent: 'moltbot-orchestrator', child: { id: 'c-esc', trustLevel: 'L4' } as never })).rejects.toMatchObject({
      code: 'ERR_SPAWN_ESCALATION',
    })
    expect(a.agent('c-typo')).toBeUndefined()
  })

  it('createVerifier({}) is ERR_CONFIG_INVALID naming what is missing', () => {
    expect(() => createVerifier({} as never)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.stringMatching(/id[\s\S]*issuers/) }),
    )
  })
})
