/** Wycheproof vectors (test/vectors/wycheproof) against the signature layer and the full verifier. */
import { createPublicKey } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createVerifier } from 'agent-trust'
import { assertSignature, splitCompact } from '../../src/tokens/jws.js'
import { wycheproof } from '../support/vectors.js'

const load = wycheproof

describe('Wycheproof ECDSA P-256 SHA-256 (IEEE P1363)', () => {
  const suite = load('ecdsa_secp256r1_sha256_p1363_test.json')
  const cases: Array<[string, any, any]> = []
  for (const g of suite.testGroups) for (const t of g.tests) cases.push([`${t.tcId} ${t.comment}`, g, t])

  it(`has the vectors (${cases.length})`, () => {
    expect(cases.length).toBe(suite.numberOfTests)
  })

  it('signature layer verdicts match every vector', () => {
    let checked = 0
    for (const [name, g, t] of cases) {
      const key = g.publicKeyJwk ? createPublicKey({ key: g.publicKeyJwk, format: 'jwk' }) : createPublicKey(g.publicKeyPem)
      const input = { signingInput: Buffer.from(t.msg, 'hex').toString('latin1'), signature: Buffer.from(t.sig, 'hex') }
      let ok = true
      try {
        assertSignature(input, key)
      } catch (e) {
        ok = false
        expect(e).toMatchObject({ code: 'ERR_TOKEN_SIGNATURE' })
      }
      if (t.result === 'valid') expect({ name, ok }).toEqual({ name, ok: true })
      else if (t.result === 'invalid') expect({ name, ok }).toEqual({ name, ok: false })
      checked++
    }
    expect(checked).toBe(cases.length)
  })
})

describe('Wycheproof JSON Web Signature', () => {
  const suite = load('json_web_signature_test.json')

  it('ES256 groups: compact-JWS signature verdicts match', () => {
    let n = 0
    for (const g of suite.testGroups) {
      if (g.public?.alg !== 'ES256') continue
      const key = createPublicKey({ key: g.public, format: 'jwk' })
      for (const t of g.tests) {
        let ok = true
        try {
          const parts = splitCompact(t.jws)
          if (parts.header.alg !== 'ES256') throw new Error('alg')
          assertSignature(parts, key)
        } catch {
          ok = false
        }
        expect({ id: t.tcId, comment: t.comment, ok }).toEqual({ id: t.tcId, comment: t.comment, ok: t.result === 'valid' })
        n++
      }
    }
    expect(n).toBeGreaterThan(30)
  })

  it('the full verifier accepts none of the 401 vectors, whatever key it trusts', async () => {
    const es = suite.testGroups.find((g: any) => g.public?.alg === 'ES256').public
    const v = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer: 'wycheproof', jwks: { keys: [es] } }], mode: 'enforce' })
    let n = 0
    for (const g of suite.testGroups) {
      for (const t of g.tests) {
        const jws = typeof t.jws === 'string' ? t.jws : JSON.stringify(t.jws)
        await expect(v.verify(jws, { scope: 'a', operation: 'read' })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_TOKEN_/) })
        n++
      }
    }
    expect(n).toBe(suite.numberOfTests)
  })
})
