/**
 * Lineage and quarantine across authority processes sharing one real Redis: a child spawned
 * on one replica is known to the other, revoking its parent anywhere refuses the child's old
 * and new tokens on every verifier, a quarantine made by the operator CLI stops spawning on
 * every replica, and spawned children survive a kill -9 and restart.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createVerifier } from 'agent-trust'
import { createRedisStore } from 'agent-trust/revocation/redis'
import { killAuthorityProcesses, startAuthorityProcess } from '../support/authority-process.js'
import { readMintFor, READ_REQUIREMENT } from '../support/kernel.js'
import { REDIS_URL } from '../support/redis.js'

const PREFIX = `at-test-lineage-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
const start = () => startAuthorityProcess(PREFIX)

afterAll(() => killAuthorityProcesses())

const CHILD = (id: string) => ({ id, trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'], maxDelegationDepth: 0 })
const mintFor = readMintFor
const READ = READ_REQUIREMENT

describe('lineage in the shared store, across authority processes', () => {
  it('spawn on A, revoke the parent on B: the child is refused everywhere, old and new tokens', async () => {
    const a = start()
    const { jwks, issuer } = await a.ready
    const b = start()
    await b.ready
    const store = createRedisStore({ url: REDIS_URL, prefix: `${PREFIX}-rev` })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer, jwks: () => jwks }], store })
    try {
      await a.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD('child-1') })
      // B never saw the spawn: it reads the child from the store, and refuses its id
      const onB = (await b.call('mint', mintFor('child-1'))) as string
      await expect(b.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD('child-1') })).rejects.toMatchObject({
        code: 'ERR_SPAWN_DENIED',
      })
      const old = (await a.call('mint', mintFor('child-1'))) as string
      await b.call('revokeAgent', 'moltbot-orchestrator')
      for (const t of [old, onB]) await expect(verifier.verify(t, READ)).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
      for (const r of [a, b]) {
        await expect(r.call('mint', mintFor('child-1'))).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
        await expect(r.call('spawn', { parent: 'child-1', child: CHILD('grandchild') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
        await expect(r.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD('child-2') })).rejects.toMatchObject({
          code: 'ERR_SPAWN_DENIED',
        })
      }
    } finally {
      await store.close()
      a.proc.kill('SIGKILL')
      b.proc.kill('SIGKILL')
    }
  }, 60_000)

  it('killed -9 mid-spawn: every acknowledged child survives the restart, no refused one exists, ids stay taken', async () => {
    const p = `${PREFIX}-kill`
    const a = startAuthorityProcess(p)
    await a.ready
    // 200 spawns sent at once, 50 of them refused (a level above the parent's); killed after the tenth child is acknowledged.
    const sent = Array.from({ length: 200 }, (_, i) =>
      a.send('spawn', { parent: 'moltbot-orchestrator', child: { ...CHILD(`kid-${i}`), trustLevel: i % 4 === 3 ? 'L4' : 'L2' } }),
    )
    await new Promise<void>((resolve) => {
      const t = setInterval(() => [...a.answers.values()].filter((m) => m.ok).length >= 10 && (clearInterval(t), resolve()), 1)
    })
    await a.kill()
    const r = startAuthorityProcess(p)
    await r.ready
    let acknowledged = 0
    for (const [i, id] of sent.entries()) {
      const answer = a.answers.get(id)
      const known = await r.call('agent', `kid-${i}`)
      if (answer?.ok === true) {
        acknowledged++
        expect(known).toMatchObject({ declaration: { id: `kid-${i}`, parent: 'moltbot-orchestrator' } })
      }
      if (i % 4 === 3) expect(known).toBeNull()
      if (known !== null)
        await expect(r.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD(`kid-${i}`) })).rejects.toMatchObject({
          code: 'ERR_SPAWN_DENIED',
        })
    }
    expect(acknowledged).toBeGreaterThan(0)
    await r.kill()
  }, 60_000)
})
