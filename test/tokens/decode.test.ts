/**
 * Step 1's parsing shortcuts against their definitions: the canonical-base64url test against
 * decoding and re-encoding, and the remembered-header path against the full header checks.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeToken, splitCompact } from '../../src/tokens/jws.js'
import { b64url, decodeHeader, decodePayload, makeKernel, signRaw } from '../support/kernel.js'

const B64URL = /^[A-Za-z0-9_-]+$/
/** The definition: in the alphabet, a possible length, and the one spelling of its bytes. */
const canonical = (part: string) =>
  B64URL.test(part) && part.length % 4 !== 1 && Buffer.from(part, 'base64url').toString('base64url') === part

const header = b64url({ alg: 'ES256', typ: 'agent-cap+jwt', kid: 'k' })
const alphabetChar = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= .'.split(''))
const part = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 80 }).map((b) => Buffer.from(b).toString('base64url')),
  fc.array(alphabetChar, { minLength: 1, maxLength: 40 }).map((cs) => cs.join('')),
)

describe('step 1: canonical base64url', () => {
  it('accepts a payload or signature exactly when decoding and re-encoding gives it back (property)', () => {
    fc.assert(
      fc.property(part, (p) => {
        const accepted = (() => {
          try {
            splitCompact(`${header}.${p}.${p}`)
            return true
          } catch (e) {
            expect(e).toMatchObject({ code: 'ERR_TOKEN_MALFORMED' })
            return false
          }
        })()
        expect(accepted).toBe(canonical(p))
      }),
      { numRuns: 2000 },
    )
  })

  it('rejects every flip of a spare bit in the last character', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 64 }).filter((b) => b.length % 3 !== 0),
        fc.integer({ min: 0, max: 3 }),
        (bytes, bit) => {
          const good = Buffer.from(bytes).toString('base64url')
          const spareBits = good.length % 4 === 2 ? 4 : 2
          fc.pre(bit < spareBits)
          const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
          const last = alphabet.indexOf(good[good.length - 1] as string)
          const bad = good.slice(0, -1) + alphabet[last ^ (1 << bit)]
          expect(Buffer.from(bad, 'base64url').equals(Buffer.from(good, 'base64url'))).toBe(true)
          expect(() => splitCompact(`${header}.${bad}.AA`)).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED' }))
        },
      ),
    )
  })
})

describe('step 1: a remembered header', () => {
  it('saves no check: a header one byte away from a remembered one is checked in full', async () => {
    const k = await makeKernel()
    const good = await k.mintRead()
    decodeToken(good) // remembered now
    const h = decodeHeader(good)
    const p = decodePayload(good)
    const { privateKey } = k.authority.keys.active()
    const cases: Array<[unknown, string]> = [
      [{ ...h, alg: 'none' }, 'ERR_TOKEN_ALG'],
      [{ ...h, alg: 'HS256' }, 'ERR_TOKEN_ALG'],
      [{ ...h, jku: 'https://evil.example/jwks' }, 'ERR_TOKEN_MALFORMED'],
      [{ ...h, typ: 'JWT' }, 'ERR_TOKEN_MALFORMED'],
      [{ alg: h.alg, typ: h.typ }, 'ERR_TOKEN_KEY_UNKNOWN'],
    ]
    for (const [forged, code] of cases) {
      expect(() => decodeToken(signRaw(forged, p, privateKey))).toThrow(expect.objectContaining({ code }))
      await expect(k.verifier.verify(signRaw(forged, p, privateKey), k.read)).rejects.toMatchObject({ code })
    }
    // The same header with another member order or spacing is another text: checked in full, and accepted.
    const reordered = `${b64url({ kid: h.kid, typ: h.typ, alg: h.alg })}`
    expect(decodeToken(`${reordered}.${good.split('.')[1]}.${good.split('.')[2]}`).header.kid).toBe(h.kid)
  })

  it('still checks the payload and signature parts behind a remembered header', async () => {
    const k = await makeKernel()
    const good = await k.mintRead()
    const [h, p, s] = good.split('.') as [string, string, string]
    decodeToken(good)
    expect(() => decodeToken(`${h}.${p}=.${s}`)).toThrow(
      expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED', details: expect.objectContaining({ rule: 'payload' }) }),
    )
    expect(() => decodeToken(`${h}.${p}.${s}A`)).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_SIGNATURE' })) // 65 bytes
    expect(() => decodeToken(`${h}.${p}.${s.slice(0, 44)}`)).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_SIGNATURE' }))
    expect(() => decodeToken(`${h}.${b64url('[1]')}.${s}`)).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED' }))
    expect(() => decodeToken(`${h}.${p}.${s}.x`)).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED' }))
    expect(() => decodeToken(`${h}.${p}`)).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_MALFORMED' }))
    // Both the payload and the signature bad: the payload is reported, as without the shortcut.
    const fresh = `${b64url({ alg: 'ES256', typ: 'agent-cap+jwt', kid: 'never-seen' })}`
    const a = (() => {
      try {
        decodeToken(`${h}.${p}=.${s}=`)
      } catch (e) {
        return e
      }
    })()
    const b = (() => {
      try {
        decodeToken(`${fresh}.${p}=.${s}=`)
      } catch (e) {
        return e
      }
    })()
    expect(a).toMatchObject({ code: 'ERR_TOKEN_MALFORMED', details: { rule: 'payload' } })
    expect(b).toMatchObject({ code: 'ERR_TOKEN_MALFORMED', details: { rule: 'payload' } })
  })
})
