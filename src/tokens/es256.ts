/**
 * The two ECDSA P-256 SHA-256 operations every token path uses, in JWS form (signature in
 * IEEE P1363, base64url for signing). The signing input is the token's ASCII text, passed as
 * latin1 so arbitrary bytes (test vectors) round-trip too. Shared by the inline path (jws.ts)
 * and the crypto thread's fallback, so both compute exactly the same thing.
 */
import { sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'

/** The base64url ES256 signature of `input`. */
export function es256Sign(key: KeyObject, input: string): string {
  return cryptoSign('sha256', Buffer.from(input, 'latin1'), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')
}

/** Whether `signature` is a valid ES256 signature of `input` under `key`. Throws as `crypto.verify` does. */
export function es256Verify(key: KeyObject, input: string, signature: Uint8Array): boolean {
  return cryptoVerify('sha256', Buffer.from(input, 'latin1'), { key, dsaEncoding: 'ieee-p1363' }, signature)
}
