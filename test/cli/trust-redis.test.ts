/**
 * `agent-trust trust` on the Redis the authorities share (REDIS_URL set, no --store): a
 * request and approval from the CLI are in force on a replica that never synced, at its
 * next mint, and the agent's earlier tokens are refused at once; a self-approval and a
 * stale approval are refused by the store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createVerifier, type Authority } from 'agent-trust'
import type { RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { closeRedisCliWorld, openRedisCliWorld, type RedisCliWorld } from '../support/cli-redis.js'
import { cli } from '../support/cli.js'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { CI, randomPrefix, sharedRedisUp } from '../support/redis.js'

const up = await sharedRedisUp()
const PREFIX = randomPrefix('cli-trust')
const WRITE_SCOPE = 'db:write:documents:namespace:user-123'

describe.skipIf(!up && !CI)('agent-trust trust on Redis', () => {
  let store: RedisReplayRevocationStore
  let authority: Authority
  let dir: string
  let env: Record<string, string | undefined>
  let world: RedisCliWorld | undefined
  beforeAll(async () => {
    world = await openRedisCliWorld('trust-redis', MANIFEST, PREFIX, { commandTimeoutMs: 2000 })
    ;({ store, authority, dir, env } = world)
  })
  afterAll(() => closeRedisCliWorld(world, PREFIX))

  const mint = (operation: 'read' | 'write') =>
    authority.mint({
      subject: 'moltbot-orchestrator',
      audience: 'agent-database-reader',
      scope: [operation === 'read' ? READ_SCOPE : WRITE_SCOPE],
      operation,
      context: CONTEXT,
    })

  it('request and approve from the CLI: in force at the next mint without a sync, earlier tokens refused', async () => {
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
    const before = await mint('write')
    const requested = await cli(['trust', 'request', 'moltbot-orchestrator', 'L1', '--reason', 'incident 42', '--by', 'sec', '--json'], {
      cwd: dir,
      env,
    })
    expect(requested.code).toBe(0)
    const id = JSON.parse(requested.stdout).request.id as string
    // The authority sees the CLI's request in the shared store.
    expect((await authority.syncTrustChanges()).length).toBe(0)
    expect(authority.listTrustChanges('pending').map((r) => r.id)).toContain(id)

    const self = await cli(['trust', 'approve', id, '--yes', '--by', 'sec', '--json'], { cwd: dir, env })
    expect(self.code).toBe(1)
    expect(JSON.parse(self.stdout).error).toMatchObject({ code: 'ERR_TRUST_CHANGE_DENIED' })
    expect(self.stdout).toContain('another operator must decide')

    const approved = await cli(['trust', 'approve', id, '--yes', '--by', 'alice', '--json'], { cwd: dir, env })
    expect(approved.code).toBe(0)
    expect(JSON.parse(approved.stdout).request).toMatchObject({ status: 'approved', decisionSeq: expect.any(Number) })
    // No sync: the authority still holds L3 in memory, but mints at the store's level.
    expect(authority.agent('moltbot-orchestrator')?.level).toBe('L3')
    await expect(mint('write')).rejects.toMatchObject({ code: 'ERR_TRUST_LEVEL' })
    await expect(verifier.verify(before, { scope: WRITE_SCOPE, operation: 'write' })).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    const after = await mint('read')
    await expect(verifier.verify(after, { scope: READ_SCOPE, operation: 'read' })).resolves.toMatchObject({ trustLevel: 'L1' })

    const again = await cli(['trust', 'approve', id, '--yes', '--by', 'bob', '--json'], { cwd: dir, env })
    expect(again.code).toBe(1)
    expect(JSON.parse(again.stdout).error.code).toBe('ERR_TRUST_CHANGE_DENIED')
    const listed = await cli(['trust', 'list', '--status', 'all', '--json'], { cwd: dir, env })
    expect(JSON.parse(listed.stdout).requests).toEqual([expect.objectContaining({ id, status: 'approved', decidedBy: 'alice' })])
  })

  it('a request made against the old level is refused as stale, in the store', async () => {
    // The orchestrator is L1 now (previous test): a request from L3 is stale.
    const r = await cli(['trust', 'request', 'moltbot-orchestrator', 'L1', '--reason', 'again', '--by', 'sec', '--json'], {
      cwd: dir,
      env,
    })
    expect(r.code).toBe(1)
    expect(JSON.parse(r.stdout).error.code).toBe('ERR_TRUST_CHANGE_DENIED')
  })
})
