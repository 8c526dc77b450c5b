/**
 * `agent-trust revoke` against the real Redis at REDIS_URL: an operator revokes in one
 * process, a verifier in another (this one) denies the next call. Random key prefix per
 * file, deleted afterwards; under CI=true an unreachable Redis fails instead of skipping.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CI, randomPrefix, sharedRedisUp } from '../support/redis.js'
import { createVerifier, type Authority } from 'agent-trust'
import type { RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { closeRedisCliWorld, openRedisCliWorld, type RedisCliWorld } from '../support/cli-redis.js'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'
import { cli, cliInProcess } from '../support/cli.js'

const up = await sharedRedisUp()
const PREFIX = randomPrefix('cli')
const deny = (code: string) => expect.objectContaining({ code })

const CHILD = { id: 'agent-sub-1', trustLevel: 'L2' as const, grants: ['db:read:documents:namespace:*'], parent: 'moltbot-orchestrator' }
const WITH_CHILD = { ...MANIFEST, agents: [...MANIFEST.agents, CHILD] }

// Skips only outside CI when Redis (or redis-server) is missing; with CI=true it runs and fails instead.
describe.skipIf(!up && !CI)('agent-trust revoke (real Redis)', () => {
  let store: RedisReplayRevocationStore
  let authority: Authority
  let dir: string
  let env: Record<string, string | undefined>
  let world: RedisCliWorld | undefined
  beforeAll(async () => {
    world = await openRedisCliWorld('revoke', WITH_CHILD, PREFIX)
    ;({ store, authority, dir, env } = world)
  })
  afterAll(() => closeRedisCliWorld(world, PREFIX))

  const verifier = () => createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
  const mint = (subject: string) =>
    authority.mint({ subject, audience: 'agent-database-reader', scope: [READ_SCOPE], operation: 'read', context: CONTEXT })
  const read = { scope: READ_SCOPE, operation: 'read' as const }

  it('revoke token <jti> in another process: the next call with it is denied; token verify --revocation sees it', async () => {
    const t = await mint('agent-summarizer-v2')
    const other = await mint('agent-summarizer-v2')
    const jti = JSON.parse(Buffer.from(t.split('.')[1] as string, 'base64url').toString()).jti as string
    const r = await cli(['revoke', 'token', jti, '--json'], { cwd: dir, env })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ revoked: { jti } })
    await expect(verifier().verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_REVOKED'))
    await expect(verifier().verify(other, read)).resolves.toBeDefined()
    const jwks = join(dir, 'jwks.json')
    writeFileSync(jwks, JSON.stringify(authority.jwks()))
    const checked = await cliInProcess(
      ['token', 'verify', t, '--jwks', jwks, '--audience', 'agent-database-reader', '--revocation', '--json'],
      { env },
    )
    expect(checked.code).toBe(1)
    expect(JSON.parse(checked.stdout).error.code).toBe('ERR_TOKEN_REVOKED')
  })

  it("revoke agent <id>: its tokens and its declared children's are denied", async () => {
    const parent = await mint('moltbot-orchestrator')
    const child = await mint(CHILD.id)
    const bystander = await mint('agent-summarizer-v2')
    await new Promise((r) => setTimeout(r, 10))
    const r = await cliInProcess(['revoke', 'agent', 'moltbot-orchestrator', '--json'], { env })
    expect(r.code).toBe(0)
    // A quarantine is permanent: no sentinel timestamp in the output.
    expect(JSON.parse(r.stdout)).toEqual({ revoked: { agents: ['moltbot-orchestrator', CHILD.id], permanent: true } })
    await expect(verifier().verify(parent, read)).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    await expect(verifier().verify(child, read)).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    await expect(verifier().verify(bystander, read)).resolves.toBeDefined()
    // Their certificates are revoked in the store the authority replicas check callers against.
    const certs = store.certificateRevocations()
    const cert = (id: string) => ({
      serialNumber: '01',
      spiffeId: `spiffe://${MANIFEST.trustDomain ?? 'agent-trust.local'}/agent/${id}`,
      notBeforeMs: Date.now() - 1000,
    })
    await expect(certs.status(cert('moltbot-orchestrator'))).resolves.toBe('identity-revoked')
    await expect(certs.status(cert(CHILD.id))).resolves.toBe('identity-revoked')
    await expect(certs.status(cert('agent-summarizer-v2'))).resolves.toBe('good')
    expect((await cliInProcess(['revoke', 'agent', 'not-in-manifest'], { env })).code).toBe(1)
    expect((await cliInProcess(['revoke', 'agent', 'not-in-manifest', '--unlisted'], { env })).code).toBe(0)
  })

  it('without REDIS_URL: exit 4; Redis unreachable: exit 3', async () => {
    const jti = '3f1c2b9e-8a7d-4c3b-9f2e-1a2b3c4d5e6f'
    expect((await cliInProcess(['revoke', 'token', jti], { env: { ...env, REDIS_URL: undefined } })).code).toBe(4)
    const down = await cliInProcess(['revoke', 'token', jti, '--json'], { env: { ...env, REDIS_URL: 'redis://127.0.0.1:1' } })
    expect(down.code).toBe(3)
    expect(JSON.parse(down.stdout).error.code).toBe('ERR_STORE_UNAVAILABLE')
  })
})
