/**
 * Revocation and single-use markers outlive every verifier's tolerance: they are kept until
 * `exp + MARKER_GRACE_SECONDS`, whatever the tolerance of the process that wrote them.
 */
import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryReplayRevocationStore, type StoreCheck } from 'agent-trust'
import { RedisReplayRevocationStore } from 'agent-trust/revocation/redis'
import { CONTEXT, decodePayload, MANIFEST, READ_SCOPE } from '../support/kernel.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const GRACE = 60 // 2 x MAX_CLOCK_TOLERANCE_SECONDS

class Recording extends MemoryReplayRevocationStore {
  readonly checks: StoreCheck[] = []
  readonly tokens: number[] = []
  override async check(input: StoreCheck) {
    this.checks.push(input)
    return super.check(input)
  }
  override async revokeToken(jti: string, forgetAtMs: number) {
    this.tokens.push(forgetAtMs)
    return super.revokeToken(jti, forgetAtMs)
  }
}

describe('marker lifetimes', () => {
  it('a verifier and an authority with no tolerance still keep markers for the largest tolerance', async () => {
    const store = new Recording()
    const authority = await Authority.create({
      manifest: { ...MANIFEST, authority: { id: 'moltbot-authority', clockToleranceSeconds: 0 } },
      store,
    })
    const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, clockToleranceSeconds: 0 })
    const token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    await verifier.verify(token, { scope: READ_SCOPE, operation: 'read' })
    const exp = decodePayload(token).exp as number
    expect(store.checks[0]!.forgetAtMs).toBeGreaterThanOrEqual((exp + GRACE) * 1000)
    const before = Date.now()
    await authority.revokeToken(decodePayload(token).jti as string)
    expect(store.tokens[0]).toBeGreaterThanOrEqual(before + (300 + GRACE) * 1000)
    authority.close()
  })

  it('Redis: the single-use marker written by a tolerance-0 verifier lives past exp + the grace', async () => {
    const prefix = `at-test-marker-${process.pid}`
    const store = new RedisReplayRevocationStore({ url: REDIS_URL, prefix })
    const raw = new Redis(REDIS_URL)
    try {
      const authority = await Authority.create({ manifest: MANIFEST, store })
      const verifier = createVerifier({
        id: 'agent-database-reader',
        issuers: [authority.trustedIssuer()],
        store,
        clockToleranceSeconds: 0,
      })
      const token = await authority.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
        ttlSeconds: 10,
      })
      await verifier.verify(token, { scope: READ_SCOPE, operation: 'read' })
      const { jti, exp } = decodePayload(token) as { jti: string; exp: number }
      const pttl = await raw.pttl(`{${prefix}:0}:u:${jti}`)
      expect(Date.now() + pttl).toBeGreaterThanOrEqual((exp + GRACE) * 1000 - 2000)
      authority.close()
    } finally {
      await store.close()
      await raw.quit()
    }
  })
})
