/**
 * The two per-call checks the bench compares the guard with, shared by the stdio fixtures of
 * both SDKs: `bare` (one node:crypto ES256 verify of the token and nothing else: the floor) and
 * `jose` (jose `jwtVerify` with issuer, audience and algorithm: the SDK-only approach).
 */
import { createPublicKey, verify, type JsonWebKey } from 'node:crypto'
import { importJWK, jwtVerify, type JWK } from 'jose'

export type TokenCheck = (token: string) => Promise<void>

/** One node:crypto ES256 verify of a compact JWS, no other check. */
export function bareCheck(jwk: JWK): TokenCheck {
  const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' })
  return async (token) => {
    const dot = token.lastIndexOf('.')
    const ok = verify(
      'sha256',
      Buffer.from(token.slice(0, dot)),
      { key, dsaEncoding: 'ieee-p1363' },
      Buffer.from(token.slice(dot + 1), 'base64url'),
    )
    if (!ok) throw new Error('bad signature')
  }
}

/** jose's ES256 JWT verification with issuer and audience. */
export async function joseCheck(jwk: JWK, issuer: string, audience: string): Promise<TokenCheck> {
  const key = await importJWK(jwk, 'ES256')
  return async (token) => {
    await jwtVerify(token, key, { issuer, audience, algorithms: ['ES256'] })
  }
}
