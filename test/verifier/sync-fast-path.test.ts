/**
 * A verifier on the in-memory store, with keys already imported, decides without awaiting:
 * the key lookup and the replay/revocation check answer in the same turn. Any other store
 * or key source is awaited. Both ways must decide alike: verifiers with the fast set-up
 * (in-memory store; a static JWKS, or an in-process function returning the same object) and
 * one with the slow set-up (a store subclass whose check is asked its async way, keys from an
 * async function) see the same random sequence of fresh, replayed, tampered, foreign-key,
 * revoked and out-of-scope tokens, and give the same capability or the same error code.
 */
import { generateKeyPairSync } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Authority, createVerifier, MemoryReplayRevocationStore, type StoreCheck, type StoreVerdict, type Verifier } from 'agent-trust'
import { CONTEXT, decodeHeader, decodePayload, MANIFEST, READ_SCOPE, signRaw } from '../support/kernel.js'

/** The in-memory store asked its async way: the verifier cannot tell it is the in-memory one. */
class AskedStore extends MemoryReplayRevocationStore {
  asked = 0
  override async check(input: StoreCheck): Promise<StoreVerdict> {
    this.asked++
    return super.check(input)
  }
}

const WRITE_SCOPE = 'db:write:documents:namespace:user-123'
const SUBJECTS = ['agent-summarizer-v2', 'agent-status-reader', 'moltbot-orchestrator']

type Step =
  | { kind: 'fresh'; subject: string; write: boolean; want: 'read' | 'write' | 'other-scope' }
  | { kind: 'replay'; pick: number }
  | { kind: 'tamper'; pick: number; at: number; char: string }
  | { kind: 'foreign'; pick: number }
  | { kind: 'revoke-token'; pick: number }
  | { kind: 'revoke-agent'; subject: string }

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('fresh' as const),
      subject: fc.constantFrom(...SUBJECTS),
      write: fc.boolean(),
      want: fc.constantFrom('read' as const, 'write' as const, 'other-scope' as const),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('replay' as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('tamper' as const),
      pick: fc.nat(),
      at: fc.nat(),
      char: fc.constantFrom('A', '_', '.', '=', 'é'),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('foreign' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revoke-token' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revoke-agent' as const), subject: fc.constantFrom(...SUBJECTS) }) },
)

async function verdict(v: Verifier, token: string, want: 'read' | 'write' | 'other-scope'): Promise<unknown> {
  const requirement =
    want === 'read'
      ? { scope: READ_SCOPE, operation: 'read' as const }
      : want === 'write'
        ? { scope: WRITE_SCOPE, operation: 'write' as const }
        : { scope: 'db:read:documents:namespace:user-999', operation: 'read' as const }
  try {
    const cap = await v.verify(token, requirement)
    return { presenter: cap.presenter, trustLevel: cap.trustLevel, jti: cap.claims.jti }
  } catch (e) {
    return { code: (e as { code?: unknown }).code }
  }
}

describe('verification: the synchronous fast path and the awaited path decide alike', () => {
  for (const keys of ['static JWKS', 'in-process function'] as const) {
    it(`on random sequences of fresh, replayed, tampered, foreign and revoked tokens (${keys})`, async () => {
      const authority = await Authority.create({ manifest: MANIFEST })
      const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      let asked = 0
      let allowed = 0
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 24 }), async (steps) => {
          const fastStore = new MemoryReplayRevocationStore()
          const slowStore = new AskedStore()
          const base = { id: 'agent-database-reader', manifest: MANIFEST, mode: 'enforce' as const }
          const fast = createVerifier({
            ...base,
            issuers: [keys === 'static JWKS' ? { issuer: authority.id, jwks: authority.jwks() } : authority.trustedIssuer()],
            store: fastStore,
          })
          const slow = createVerifier({
            ...base,
            issuers: [{ issuer: authority.id, jwks: async () => authority.jwks() }],
            store: slowStore,
          })
          const tokens: string[] = []
          const pick = (n: number) => tokens[n % tokens.length] as string
          for (const s of steps) {
            if (s.kind === 'revoke-token' || s.kind === 'revoke-agent') {
              if (s.kind === 'revoke-token' && tokens.length === 0) continue
              for (const store of [fastStore, slowStore]) {
                if (s.kind === 'revoke-token') await store.revokeToken(decodePayload(pick(s.pick)).jti as string, Date.now() + 600_000)
                else await store.revokeAgent(s.subject, Math.floor(Date.now() / 1000))
              }
              continue
            }
            let token: string
            let want: 'read' | 'write' | 'other-scope' = 'read'
            if (s.kind === 'fresh') {
              const t = await authority
                .mint({
                  subject: s.subject,
                  audience: 'agent-database-reader',
                  scope: [s.write ? WRITE_SCOPE : READ_SCOPE],
                  operation: s.write ? 'write' : 'read',
                  context: CONTEXT,
                })
                .catch(() => undefined)
              if (t === undefined) continue
              token = t
              want = s.want
              tokens.push(t)
            } else if (tokens.length === 0) {
              continue
            } else if (s.kind === 'replay') {
              token = pick(s.pick)
            } else if (s.kind === 'tamper') {
              const t = pick(s.pick)
              const at = s.at % t.length
              token = `${t.slice(0, at)}${s.char}${t.slice(at + 1)}`
            } else {
              // The same header and claims signed by a key nobody trusts.
              const t = pick(s.pick)
              token = signRaw(decodeHeader(t), decodePayload(t), forger.privateKey)
            }
            const a = await verdict(fast, token, want)
            expect(a).toEqual(await verdict(slow, token, want))
            if ((a as { jti?: unknown }).jti !== undefined) allowed++
          }
          asked += slowStore.asked
        }),
        { numRuns: 120 },
      )
      // Not vacuous: many tokens verified, and the slow side awaited its store.
      expect(allowed).toBeGreaterThan(30)
      expect(asked).toBeGreaterThan(100)
      authority.close()
    })
  }
})
