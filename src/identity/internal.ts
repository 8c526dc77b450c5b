/**
 * Internals shared by the CA, the CSR helpers and peer validation. Not exported.
 *
 * @peculiar/x509 does all ASN.1; node's WebCrypto is passed explicitly to every call rather
 * than installed in the library's global provider, so importing this module changes nothing
 * for anyone else using @peculiar/x509 in the same process.
 */
import './reflect-metadata.js'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import { sha256b64url } from '../lib/hash.js'

/** node's WebCrypto, passed as the crypto provider to every @peculiar/x509 call. */
export const provider: webcrypto.Crypto = webcrypto

export type CryptoKey = webcrypto.CryptoKey
export type CryptoKeyPair = webcrypto.CryptoKeyPair

/** The only key type: ECDSA P-256 (also what the capability tokens use). */
export const EC_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const
/** ECDSA with SHA-256 for certificate and CSR signatures. */
export const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const

export const OID_SAN = '2.5.29.17'
export const OID_BASIC_CONSTRAINTS = '2.5.29.19'
export const OID_KEY_USAGE = '2.5.29.15'
export const OID_EXT_KEY_USAGE = '2.5.29.37'

export async function generateP256(): Promise<CryptoKeyPair> {
  return (await provider.subtle.generateKey({ ...EC_KEY_ALGORITHM }, true, ['sign', 'verify'])) as CryptoKeyPair
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await provider.subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY')
}

export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem)
  return provider.subtle.importKey('pkcs8', der, { ...EC_KEY_ALGORITHM }, true, ['sign'])
}

/** RFC 8705 `x5t#S256`: base64url SHA-256 of the certificate's DER. */
export function thumbprintOf(der: ArrayBuffer | Uint8Array): string {
  return sha256b64url(der instanceof Uint8Array ? der : new Uint8Array(der))
}

/** A positive 127-bit serial number, hex (RFC 5280: at most 20 octets, unpredictable). */
export function randomSerial(): string {
  const bytes = new Uint8Array(16)
  provider.getRandomValues(bytes)
  // Clear the sign bit and set the next one so DER never trims or pads the integer.
  bytes[0] = ((bytes[0] as number) & 0x7f) | 0x40
  return Buffer.from(bytes).toString('hex')
}

/** True for an ECDSA P-256 public key. */
export function isP256(publicKey: x509.PublicKey): boolean {
  const a = publicKey.algorithm as { name?: string; namedCurve?: string }
  return a.name === 'ECDSA' && a.namedCurve === 'P-256'
}

export { x509 }
