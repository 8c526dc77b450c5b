/**
 * Authority processes whose clocks disagree, sharing one Redis: tokens and trust-change
 * revocations are dated by the store's clock, so a raise on one replica and a lowering on
 * another within the same second leave the lower level in force everywhere, kill every
 * token minted at the higher level, and stay that way after both restart.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createVerifier, type TrustChangeRequest } from 'agent-trust'
import { createRedisStore } from 'agent-trust/revocation/redis'
import { CONTEXT } from '../support/kernel.js'
import { killAuthorityProcesses, startAuthorityProcess } from '../support/authority-process.js'
import { CI, deleteKeys, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'

const up = await sharedRedisUp()
const PREFIX = randomPrefix('clocks')
const closers: Array<() => Promise<void>> = []
afterAll(async () => {
  killAuthorityProcesses()
  for (const c of closers) await c()
  if (up && !process.env.KEEP) await deleteKeys(REDIS_URL, `{${PREFIX}*`)
})

const WRITE_SCOPE = 'db:write:documents:namespace:user-123'
const READ_SCOPE = 'db:read:documents:namespace:user-123'
const AGENT = 'agent-status-reader' // L1 in the manifest, with read and write grants
const mintFor = (operation: 'read' | 'write') => ({
  subject: AGENT,
  audience: 'agent-database-reader',
  scope: [operation === 'write' ? WRITE_SCOPE : READ_SCOPE],
  operation,
  context: CONTEXT,
})
const payload = (t: string): { iat: number } =>
  JSON.parse(Buffer.from(t.split('.')[1] as string, 'base64url').toString()) as { iat: number }

describe.skipIf(!up && !CI)('trust changes across replicas with skewed clocks', () => {
  it('raise on a replica 8 s ahead, lower on one 8 s behind within a second: the lower level wins, old tokens die, after restart too', async () => {
    const p = `${PREFIX}-skew`
    const ahead = startAuthorityProcess(p, { clockSkewMs: 8_000 })
    const behind = startAuthorityProcess(p, { clockSkewMs: -8_000 })
    const { jwks, issuer } = await ahead.ready
    await behind.ready
    const store = createRedisStore({ url: REDIS_URL, prefix: `${p}-rev`, commandTimeoutMs: 2000 })
    closers.push(() => store.close())
    // The widest tolerance a verifier may have: a token dated by a clock 8 s ahead is not
    // refused as "not yet valid", so only the revocation can refuse it.
    const verifier = createVerifier({
      id: 'agent-database-reader',
      issuers: [{ issuer, jwks: () => jwks }],
      store,
      clockToleranceSeconds: 30,
      mode: 'enforce',
    })

    const raise = (await ahead.call('requestTrustChange', {
      agentId: AGENT,
      level: 'L2',
      reason: 'r',
      requestedBy: 'ops',
    })) as TrustChangeRequest
    await ahead.call('decideTrustChange', raise.id, { approved: true, approver: 'alice' })
    const high = (await ahead.call('mint', mintFor('write'))) as string
    // Dated by the store, not by the replica's clock 8 s ahead.
    expect(Math.abs(payload(high).iat - Math.floor(Date.now() / 1000))).toBeLessThanOrEqual(2)
    await behind.call('syncTrustChanges')
    const lower = (await behind.call('requestTrustChange', {
      agentId: AGENT,
      level: 'L1',
      reason: 'r',
      requestedBy: 'sec',
    })) as TrustChangeRequest
    await behind.call('decideTrustChange', lower.id, { approved: true, approver: 'bob' })

    // The write token minted at L2 before the lowering is refused by every verifier.
    await expect(verifier.verify(high, { scope: WRITE_SCOPE, operation: 'write' })).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    // The replica ahead has not synced: it mints at the store's level, and dates after the revocation.
    await expect(ahead.call('mint', mintFor('write'))).rejects.toMatchObject({ code: 'ERR_TRUST_LEVEL' })
    const read = (await ahead.call('mint', mintFor('read'))) as string
    await expect(verifier.verify(read, { scope: READ_SCOPE, operation: 'read' })).resolves.toMatchObject({
      presenter: AGENT,
      trustLevel: 'L1',
    })
    const readBehind = (await behind.call('mint', mintFor('read'))) as string
    await expect(verifier.verify(readBehind, { scope: READ_SCOPE, operation: 'read' })).resolves.toMatchObject({
      presenter: AGENT,
      trustLevel: 'L1',
    })

    await ahead.call('syncTrustChanges')
    for (const r of [ahead, behind]) expect(await r.call('agent', AGENT)).toMatchObject({ level: 'L1' })
    await ahead.kill()
    await behind.kill()
    for (const skew of [8_000, -8_000]) {
      const again = startAuthorityProcess(p, { clockSkewMs: skew })
      expect(await again.call('agent', AGENT)).toMatchObject({ level: 'L1' })
      await expect(again.call('mint', mintFor('write'))).rejects.toMatchObject({ code: 'ERR_TRUST_LEVEL' })
      await again.kill()
    }
    await expect(verifier.verify(high, { scope: WRITE_SCOPE, operation: 'write' })).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
  }, 60_000)
})
