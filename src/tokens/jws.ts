/**
 * Compact JWS ES256 signing and verification on `node:crypto`, for the per-call hot path.
 *
 * jose does key import, generation, thumbprints and JWKS; here we only sign and verify
 * with cached `KeyObject`s, because jose's WebCrypto path costs 2-5x a direct
 * `crypto.sign`/`crypto.verify`. A differential test (test/tokens/differential.test.ts)
 * holds the two to identical verdicts on a corpus of valid and invalid tokens.
 */
import type { KeyObject } from 'node:crypto'
import { RequestInvalid, TokenAlgorithm, TokenKeyUnknown, TokenMalformed, TokenSignature } from '../errors.js'
import { TOKEN_ALG, TOKEN_TYPE } from '../policy/claims.js'
import { signOnCryptoThread, verifyOnCryptoThread } from './crypto-thread.js'
import { es256Sign, es256Verify } from './es256.js'
import { MAX_TOKEN_BYTES } from '../policy/limits.js'
import { parseStrictJson, StrictJsonError } from '../lib/strict-json.js'

const B64URL = /^[A-Za-z0-9_-]+$/
/** A P-256 signature in IEEE P1363 form is 64 bytes. */
const SIGNATURE_BYTES = 64

export interface ProtectedHeader {
  readonly alg: 'ES256'
  readonly typ: typeof TOKEN_TYPE
  readonly kid: string
}

export interface DecodedToken {
  readonly header: ProtectedHeader
  readonly payload: unknown
  readonly signingInput: string
  readonly signature: Buffer
}

/** The value of a base64url character already known to be in the alphabet. */
function base64urlValue(c: number): number {
  if (c >= 97) return c - 71 // a-z
  if (c >= 65) return c - 65 // A-Z
  if (c >= 48) return c + 4 // 0-9
  return c === 45 ? 62 : 63 // - _
}

/**
 * Whether the spare low bits of the last character are zero: the one spelling of these
 * bytes. (Equivalent to re-encoding and comparing, without the second pass over the part.)
 */
function hasCanonicalTail(part: string): boolean {
  const rest = part.length % 4
  if (rest === 0) return true
  const spare = rest === 2 ? 0x0f : 0x03
  return (base64urlValue(part.charCodeAt(part.length - 1)) & spare) === 0
}

function decodeStrict(part: string, what: string, allowEmpty = false): Buffer {
  if (allowEmpty && part.length === 0) return Buffer.alloc(0)
  if (part.length === 0 || !B64URL.test(part) || part.length % 4 === 1) {
    throw new TokenMalformed(`the ${what} is not base64url`, { details: { rule: what } })
  }
  // Reject non-canonical encodings (non-zero trailing bits): one token, one spelling.
  if (!hasCanonicalTail(part)) {
    throw new TokenMalformed(`the ${what} is not canonical base64url`, { details: { rule: what } })
  }
  return Buffer.from(part, 'base64url')
}

/**
 * One reading of the header or payload (see lib/strict-json.ts): strict UTF-8 and no member named
 * twice at any depth, so no other JSON reader sees a different `alg`, `kid`, `aud` or `trust_level`.
 */
function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = parseStrictJson(bytes)
  } catch (e) {
    const reason = e instanceof StrictJsonError ? e.rule : 'syntax'
    const text =
      reason === 'utf8'
        ? `the ${what} is not valid UTF-8`
        : reason === 'duplicate'
          ? `the ${what} names a JSON member twice`
          : `the ${what} is not JSON`
    throw new TokenMalformed(text, { details: { rule: what, reason } })
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenMalformed(`the ${what} is not a JSON object`, { details: { rule: what } })
  }
  return value as Record<string, unknown>
}

/** The three parts of a compact JWS, strictly decoded; no header or claim rules applied. */
export interface CompactParts {
  readonly header: Record<string, unknown>
  readonly payloadBytes: Buffer
  readonly signingInput: string
  readonly signature: Buffer
}

/** Size, three parts, strict canonical base64url, a JSON-object header. Throws `ERR_TOKEN_MALFORMED`. */
export function splitCompact(token: unknown): CompactParts {
  if (typeof token !== 'string') throw new TokenMalformed('the token must be a string')
  if (token.length > MAX_TOKEN_BYTES) throw new TokenMalformed('the token exceeds 8 KiB', { details: { rule: 'size' } })
  const dot1 = token.indexOf('.')
  const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1)
  if (dot1 < 0 || dot2 < 0 || token.indexOf('.', dot2 + 1) !== -1) {
    throw new TokenMalformed('the token is not a compact JWS (three dot-separated parts)', { details: { rule: 'shape' } })
  }
  const header = parseJsonObject(decodeStrict(token.slice(0, dot1), 'header'), 'header')
  const payloadBytes = decodeStrict(token.slice(dot1 + 1, dot2), 'payload')
  // An empty signature is a shape the alg check reports better ("alg":"none" tokens).
  const signature = decodeStrict(token.slice(dot2 + 1), 'signature', true)
  return { header, payloadBytes, signingInput: token.slice(0, dot2), signature }
}

/**
 * Step 1 of verification: size, shape, header. Does not check the signature.
 * Throws `ERR_TOKEN_MALFORMED`, `ERR_TOKEN_ALG` or `ERR_TOKEN_KEY_UNKNOWN` (kid missing).
 */
export function decodeToken(token: unknown): DecodedToken {
  // Every token from one key has the same header: one that passed every check below is
  // remembered by its exact encoding, and the next token with it skips straight to the payload.
  if (typeof token === 'string' && token.length <= MAX_TOKEN_BYTES) {
    const dot1 = token.indexOf('.')
    const header = dot1 > 0 ? checkedHeaders.get(token.slice(0, dot1)) : undefined
    if (header !== undefined) {
      const dot2 = token.indexOf('.', dot1 + 1)
      if (dot2 > 0 && token.indexOf('.', dot2 + 1) === -1) {
        // The same checks in the same order as below, minus the header's.
        const payloadBytes = decodeStrict(token.slice(dot1 + 1, dot2), 'payload')
        const signature = decodeStrict(token.slice(dot2 + 1), 'signature', true)
        if (signature.length !== SIGNATURE_BYTES) throw new TokenSignature('the signature is not 64 bytes (ES256, IEEE P1363)')
        return { header, payload: parseJsonObject(payloadBytes, 'payload'), signingInput: token.slice(0, dot2), signature }
      }
    }
  }
  const { header, payloadBytes, signingInput, signature } = splitCompact(token)
  const checked = checkHeader(header)
  if (signature.length !== SIGNATURE_BYTES) throw new TokenSignature('the signature is not 64 bytes (ES256, IEEE P1363)')
  const payload = parseJsonObject(payloadBytes, 'payload')
  rememberHeader(signingInput.slice(0, signingInput.indexOf('.')), checked)
  return { header: checked, payload, signingInput, signature }
}

/** Encoded headers that passed {@link checkHeader}, by their exact base64url text. Bounded: callers choose them. */
const checkedHeaders = new Map<string, ProtectedHeader>()

function rememberHeader(encoded: string, header: ProtectedHeader): void {
  if (checkedHeaders.size >= 64) checkedHeaders.clear()
  checkedHeaders.set(encoded, Object.freeze({ ...header }))
}

/** The header rules of step 1. */
function checkHeader(header: Record<string, unknown>): ProtectedHeader {
  // alg first: "alg":"none" and HMAC confusion get their own code whatever else is wrong.
  if (header.alg !== TOKEN_ALG) throw new TokenAlgorithm(undefined, { details: { rule: 'alg' } })
  let members = 0
  for (const k in header) {
    members++
    if (k !== 'alg' && k !== 'typ' && k !== 'kid') {
      // jwk, jku, x5u, x5c, crit, b64, ... are never honoured.
      throw new TokenMalformed('the header has a member other than alg, typ and kid', {
        details: { rule: 'header-member', member: k.slice(0, 32) },
      })
    }
  }
  if (header.typ !== TOKEN_TYPE) throw new TokenMalformed(`the header typ must be "${TOKEN_TYPE}"`, { details: { rule: 'typ' } })
  const kid = header.kid
  if (members !== 3 || typeof kid !== 'string' || kid.length === 0 || kid.length > 128) {
    throw new TokenKeyUnknown('the header kid is missing or not a string', { details: { rule: 'kid' } })
  }
  return header as unknown as ProtectedHeader
}

/** Step 2: the ES256 signature over `header.payload`. Throws `ERR_TOKEN_SIGNATURE`. */
export function assertSignature(decoded: Pick<DecodedToken, 'signingInput' | 'signature'>, key: KeyObject): void {
  let ok = false
  try {
    ok = es256Verify(key, decoded.signingInput, decoded.signature)
  } catch (cause) {
    throw new TokenSignature(undefined, { cause })
  }
  if (!ok) throw new TokenSignature()
}

/**
 * Step 2 on the dedicated crypto thread instead of the event loop (`cryptoOffload`; see
 * crypto-thread.ts): a thread hop of latency per call, in exchange for the ECDSA work running
 * on another core while the event loop serves other requests.
 */
export async function assertSignatureOffloaded(decoded: Pick<DecodedToken, 'signingInput' | 'signature'>, key: KeyObject): Promise<void> {
  let ok = false
  try {
    ok = await verifyOnCryptoThread(key, decoded.signingInput, decoded.signature)
  } catch (cause) {
    throw new TokenSignature(undefined, { cause })
  }
  if (!ok) throw new TokenSignature()
}

const encodedHeaders = new Map<string, string>()

function signingInputOf(payload: object, kid: string): string {
  let h = encodedHeaders.get(kid)
  if (h === undefined) {
    h = Buffer.from(JSON.stringify({ alg: TOKEN_ALG, typ: TOKEN_TYPE, kid })).toString('base64url')
    if (encodedHeaders.size > 64) encodedHeaders.clear()
    encodedHeaders.set(kid, h)
  }
  const input = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`
  // Never sign what no verifier accepts: a token over the size bound is refused before it
  // is decoded, so minting it would hand out a capability that can never be used.
  if (input.length + ES256_SIGNATURE_SUFFIX > MAX_TOKEN_BYTES)
    throw new RequestInvalid(
      `the token would be ${input.length + ES256_SIGNATURE_SUFFIX} bytes, over the ${MAX_TOKEN_BYTES} a verifier accepts: ask for fewer or shorter scopes or context values`,
      { details: { rule: 'token-size' } },
    )
  return input
}

/** `.` plus the base64url of a 64-byte IEEE P1363 ES256 signature. */
const ES256_SIGNATURE_SUFFIX = 1 + 86

/** Sign `payload` as a compact JWS with header `{alg:ES256, typ, kid}`. */
export function signToken(payload: object, kid: string, privateKey: KeyObject): string {
  const input = signingInputOf(payload, kid)
  return `${input}.${es256Sign(privateKey, input)}`
}

/** {@link signToken} with the ECDSA work on the crypto thread (see {@link assertSignatureOffloaded}). */
export async function signTokenOffloaded(payload: object, kid: string, privateKey: KeyObject): Promise<string> {
  const input = signingInputOf(payload, kid)
  return `${input}.${await signOnCryptoThread(privateKey, input)}`
}
