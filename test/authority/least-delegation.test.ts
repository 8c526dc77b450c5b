/**
 * Least delegation by default: a tool-call token may not be re-delegated unless the call asks
 * for it, and a presented token is exchanged at most once, also across authority replicas that
 * share one Redis store.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Authority } from 'agent-trust'
import { createRedisStore, type RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { CONTEXT, decodePayload, makeKernel, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { randomPrefix, REDIS_URL } from '../support/redis.js'

const deny = (code: string) => expect.objectContaining({ code })

describe('mintForTool: delegation_depth 0 unless asked', () => {
  it('an ordinary tool-call token carries delegation_depth 0 and its callee cannot exchange it', async () => {
    const { authority, verifier } = await makeKernel()
    // The orchestrator (maxDelegationDepth 3) calling the database reader's tool:
    const t = await authority.mintForTool({
      subject: 'moltbot-orchestrator',
      audience: 'agent-database-reader',
      tool: 'read_documents',
      args: { namespace: 'user-123' },
      context: CONTEXT,
    })
    expect(decodePayload(t.token)).toMatchObject({ delegation_depth: 0 })
    await expect(authority.exchange({ token: t.token, holder: 'agent-database-reader', audience: 'agent-summarizer-v2' })).rejects.toThrow(
      expect.objectContaining({ code: expect.stringMatching(/^ERR_(DELEGATION_DEPTH|TRUST_LEVEL_DENIED)$/) }),
    )
    await expect(verifier.verify(t.token, { scope: t.scope, operation: t.operation })).resolves.toBeDefined()
  })

  it('asks for more within the subject maximum, and not beyond', async () => {
    const { authority } = await makeKernel()
    const ask = (delegationDepth: number) =>
      authority.mintForTool({
        subject: 'moltbot-orchestrator',
        audience: 'agent-database-reader',
        tool: 'read_documents',
        args: { namespace: 'user-123' },
        context: CONTEXT,
        delegationDepth,
      })
    expect(decodePayload((await ask(2)).token)).toMatchObject({ delegation_depth: 2 })
    await expect(ask(4)).rejects.toThrow(deny('ERR_DELEGATION_DEPTH'))
    await expect(ask(-1)).rejects.toThrow(deny('ERR_DELEGATION_DEPTH'))
  })
})

const parentFor = (authority: Authority) =>
  authority.mint({
    subject: 'moltbot-orchestrator',
    audience: 'agent-summarizer-v2',
    scope: [READ_SCOPE],
    operation: 'read',
    context: CONTEXT,
    delegationDepth: 2,
  })

describe('exchange: one exchange per presented token', () => {
  it('a second exchange of the same token is a replay; the holder can still use the token itself', async () => {
    const { authority } = await makeKernel()
    const parent = await parentFor(authority)
    const first = await authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })
    expect(decodePayload(first)).toMatchObject({ delegation_depth: 1 })
    for (const audience of ['agent-database-reader', 'moltbot-orchestrator'])
      await expect(authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience })).rejects.toThrow(
        expect.objectContaining({ code: 'ERR_TOKEN_REPLAYED', details: expect.objectContaining({ rule: 'exchange-once' }) }),
      )
  })

  it('a refused exchange spends nothing', async () => {
    const { authority } = await makeKernel()
    const parent = await parentFor(authority)
    await expect(
      authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader', scope: ['db:write:x'] }),
    ).rejects.toThrow()
    await expect(
      authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' }),
    ).resolves.toBeTypeOf('string')
  })

  const stores: RedisReplayRevocationStore[] = []
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()))
  })

  it('two authority replicas on one Redis store exchange a token once between them, even concurrently', async () => {
    const prefix = randomPrefix('xonce')
    const store = () => {
      const s = createRedisStore({ url: REDIS_URL, prefix, commandTimeoutMs: 5000 })
      stores.push(s)
      return s
    }
    const a = await Authority.create({ manifest: MANIFEST, store: store() })
    const b = await Authority.create({ manifest: MANIFEST, store: store(), keys: a.keys })
    const parent = await parentFor(a)
    const go = (x: Authority) => x.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })
    const results = await Promise.allSettled([go(a), go(b), go(a), go(b)])
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    for (const r of results.filter((r) => r.status === 'rejected')) expect(r.reason).toMatchObject({ code: 'ERR_TOKEN_REPLAYED' })
  })
})
