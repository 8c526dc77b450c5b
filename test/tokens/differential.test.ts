/**
 * The hot path signs and verifies with node:crypto instead of jose. Here both see the same
 * corpus of valid and invalid tokens and must reach identical signature verdicts.
 */
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto'
import fc from 'fast-check'
import { compactVerify, importJWK, jwtVerify, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { assertSignature, decodeToken } from '../../src/tokens/jws.js'
import { b64url, makeKernel } from '../support/kernel.js'

const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551')

async function setup() {
  const k = await makeKernel()
  const jwk = k.authority.jwks().keys[0]!
  const joseKey = await importJWK(jwk, 'ES256')
  const { privateKey } = k.authority.keys.active()
  const { createPublicKey } = await import('node:crypto')
  const publicKey = createPublicKey(privateKey)
  const ours = (t: string): boolean => {
    try {
      assertSignature(decodeToken(t), publicKey)
      return true
    } catch {
      return false
    }
  }
  const theirs = async (t: string): Promise<boolean> => {
    try {
      await compactVerify(t, joseKey, { algorithms: ['ES256'] })
      return true
    } catch {
      return false
    }
  }
  return { ...k, privateKey, publicKey, joseKey, ours, theirs }
}

function withSignature(token: string, sig: Buffer): string {
  return `${token.slice(0, token.lastIndexOf('.'))}.${sig.toString('base64url')}`
}

describe('differential: node:crypto verify vs jose compactVerify', () => {
  it('agrees on a hand-made corpus', async () => {
    const { mintRead, ours, theirs, privateKey } = await setup()
    const good = await mintRead()
    const sig = Buffer.from(good.slice(good.lastIndexOf('.') + 1), 'base64url')
    const r = BigInt(`0x${sig.subarray(0, 32).toString('hex')}`)
    const s = BigInt(`0x${sig.subarray(32).toString('hex')}`)
    const hex32 = (n: bigint) => Buffer.from(n.toString(16).padStart(64, '0'), 'hex')
    const corpus: Array<[string, string]> = [
      ['valid', good],
      ['high-S twin (malleable form)', withSignature(good, Buffer.concat([hex32(r), hex32(P256_N - s)]))],
      ['s + n (out of range)', withSignature(good, Buffer.concat([hex32(r), hex32(s + P256_N).subarray(-32)]))],
      ['r = 0', withSignature(good, Buffer.concat([Buffer.alloc(32), hex32(s)]))],
      ['s = 0', withSignature(good, Buffer.concat([hex32(r), Buffer.alloc(32)]))],
      ['r = n', withSignature(good, Buffer.concat([hex32(P256_N), hex32(s)]))],
      ['all 0xff', withSignature(good, Buffer.alloc(64, 0xff))],
      ['swapped r/s', withSignature(good, Buffer.concat([hex32(s), hex32(r)]))],
      [
        'other key',
        withSignature(
          good,
          cryptoSign('sha256', Buffer.from(good.slice(0, good.lastIndexOf('.'))), {
            key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
            dsaEncoding: 'ieee-p1363',
          }),
        ),
      ],
      ['payload changed', `${good.split('.')[0]}.${b64url({ x: 1 })}.${good.split('.')[2]}`],
      [
        'signature over another payload',
        (() => {
          const input = `${good.split('.')[0]}.${b64url({ x: 1 })}`
          return `${input}.${cryptoSign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
        })(),
      ],
    ]
    for (const [name, t] of corpus) {
      const a = ours(t)
      const b = await theirs(t)
      expect({ name, ours: a }).toEqual({ name, ours: b })
    }
    expect(ours(good)).toBe(true)
  })

  it('agrees on randomly mutated signatures and payloads (property)', async () => {
    const { mintRead, ours, theirs } = await setup()
    const good = await mintRead()
    const sig = Buffer.from(good.slice(good.lastIndexOf('.') + 1), 'base64url')
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 255 }), async (i, x) => {
        const s2 = Buffer.from(sig)
        s2[i] = (s2[i] as number) ^ x
        const t = withSignature(good, s2)
        expect(ours(t)).toBe(await theirs(t))
        expect(ours(t)).toBe(false)
      }),
      { numRuns: 300 },
    )
  })

  it('tokens we sign verify in jose (jwtVerify with typ and algorithms), and jose-signed tokens verify in ours', async () => {
    const { mintRead, joseKey, ours, authority, privateKey } = await setup()
    const t = await mintRead()
    const r = await jwtVerify(t, joseKey, {
      algorithms: ['ES256'],
      typ: 'agent-cap+jwt',
      audience: 'agent-database-reader',
      issuer: 'moltbot-authority',
    })
    expect(r.payload.sub).toBe('agent-summarizer-v2')
    const kid = authority.keys.active().kid
    const joseSigned = await new SignJWT({ scope: ['a'] }).setProtectedHeader({ alg: 'ES256', typ: 'agent-cap+jwt', kid }).sign(privateKey)
    expect(ours(joseSigned)).toBe(true)
  })
})

describe('cryptoOffload: the crypto-thread path reaches the same verdicts', () => {
  it('signs and verifies on the crypto thread exactly as inline', async () => {
    const { Authority, createVerifier } = await import('agent-trust')
    const { MANIFEST, CONTEXT, READ_SCOPE } = await import('../support/kernel.js')
    const authority = await Authority.create({ manifest: MANIFEST, cryptoOffload: true })
    const offloaded = authority.createVerifier({ id: 'agent-database-reader', mode: 'enforce', cryptoOffload: true })
    const inline = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'enforce' })
    const req = { scope: READ_SCOPE, operation: 'read' as const }
    const mint = () =>
      authority.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
    const tokens = await Promise.all(Array.from({ length: 50 }, mint))
    const results = await Promise.all(tokens.map((t) => offloaded.verify(t, req)))
    expect(results).toHaveLength(50)
    await expect(inline.verify(await mint(), req)).resolves.toBeDefined()
    const t = await mint()
    const sig = Buffer.from(t.slice(t.lastIndexOf('.') + 1), 'base64url')
    sig[5] = (sig[5] as number) ^ 0x40
    const bad = withSignature(t, sig)
    await expect(offloaded.verify(bad, req)).rejects.toMatchObject({ code: 'ERR_TOKEN_SIGNATURE' })
    await expect(inline.verify(bad, req)).rejects.toMatchObject({ code: 'ERR_TOKEN_SIGNATURE' })
    await expect(offloaded.verify(withSignature(t, Buffer.alloc(64)), req)).rejects.toMatchObject({ code: 'ERR_TOKEN_SIGNATURE' })
  })
})
