/**
 * The internal CA: one self-signed P-256 root per trust domain that
 * signs short-lived X.509-SVID leaf certificates from CSRs.
 *
 * The CA never generates an agent's key and never trusts what a CSR claims: the caller
 * (the authority service) tells it which workload it authenticated, and the CSR must ask
 * for exactly that identity, or nothing is signed. What goes into the certificate is decided
 * here, never copied from the CSR: only the public key is taken from it.
 */
import type { webcrypto } from 'node:crypto'
import { CertificateRequestDenied, ConfigInvalid } from '../errors.js'
import {
  type CryptoKey,
  EC_KEY_ALGORITHM,
  generateP256,
  importPrivateKeyPem,
  isP256,
  OID_SAN,
  privateKeyToPem,
  provider,
  randomSerial,
  SIGNING_ALGORITHM,
  thumbprintOf,
  x509,
} from './internal.js'
import { createIdentityRequest } from './csr.js'
import { isTrustDomain, spiffeIdOf, type Workload } from './spiffe.js'
import type { TlsCredentials } from './types.js'

export type { TlsCredentials } from './types.js'

export interface IssuedCertificate {
  readonly certificatePem: string
  /** The CA bundle to trust peers with. */
  readonly caPem: string
  readonly spiffeId: string
  readonly workload: Workload
  /** Lowercase hex. */
  readonly serialNumber: string
  readonly notBefore: Date
  readonly notAfter: Date
  /** RFC 8705 `x5t#S256` of the certificate. */
  readonly thumbprint: string
}

export interface CertificateAuthorityOptions {
  /** SPIFFE trust domain, e.g. `agent-trust.local` (the manifest's `trustDomain`). */
  readonly trustDomain: string
  /** Validity of the CA certificate in days. Default 365. */
  readonly validityDays?: number
  /** Leaf lifetime in seconds when a request names none. Default 86400 (24 h). */
  readonly defaultTtlSeconds?: number
}

export interface IssueRequest {
  /** PKCS#10 CSR in PEM, generated where the workload runs. */
  readonly csr: string
  /** The identity the caller *authenticated*; the CSR must ask for exactly this one. */
  readonly workload: Workload
  /** Leaf lifetime, seconds. Default 24 h, at most {@link MAX_CERTIFICATE_TTL_SECONDS}. */
  readonly ttlSeconds?: number
  /** Issue "now" at this epoch ms (tests); default `Date.now()`. */
  readonly nowMs?: number
  /**
   * The identity's certificates issued until this epoch ms are revoked: the new one's
   * `notBefore` is then the next whole second after it instead of backdated, or it would fall
   * under that revocation (which refuses every certificate with `notBefore` at or before it).
   */
  readonly identityRevokedAtMs?: number
}

/** Default leaf lifetime: 24 h. */
export const DEFAULT_CERTIFICATE_TTL_SECONDS = 24 * 3600
/** Longest leaf lifetime the CA issues: 7 days (bounds how long a revocation must be kept). */
export const MAX_CERTIFICATE_TTL_SECONDS = 7 * 24 * 3600
/** notBefore is backdated by this much so that a peer whose clock lags still accepts a fresh certificate. */
export const CERTIFICATE_BACKDATE_SECONDS = 60
/** A CSR larger than this is refused before parsing. */
const MAX_CSR_CHARS = 16 * 1024

function deny(rule: string, message: string, cause?: unknown): CertificateRequestDenied {
  return new CertificateRequestDenied(message, { details: { rule }, ...(cause === undefined ? {} : { cause }) })
}

/**
 * Check a CSR against the identity the caller authenticated and return its public key.
 * Throws `ERR_CSR_DENIED` with `details.rule`: `malformed`, `signature`, `key` or `identity`.
 */
export async function checkCertificateRequest(csrPem: unknown, expectedSpiffeId: string): Promise<x509.PublicKey> {
  try {
    return await checkCsr(csrPem, expectedSpiffeId)
  } catch (e) {
    // Whatever the parser throws on hostile input is a refusal, never an uncoded error.
    throw e instanceof CertificateRequestDenied ? e : deny('malformed', 'the CSR could not be parsed', e)
  }
}

async function checkCsr(csrPem: unknown, expectedSpiffeId: string): Promise<x509.PublicKey> {
  if (typeof csrPem !== 'string' || csrPem.length === 0 || csrPem.length > MAX_CSR_CHARS)
    throw deny('malformed', 'the CSR must be a PEM string of at most 16 KiB')
  let csr: x509.Pkcs10CertificateRequest
  try {
    if (!csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) throw new Error('not a PEM certificate request')
    csr = new x509.Pkcs10CertificateRequest(csrPem)
  } catch (cause) {
    throw deny('malformed', 'the CSR is not a PEM PKCS#10 certificate request', cause)
  }
  // Proof of possession: whoever sent the CSR holds the private key of the key it certifies.
  let ok = false
  try {
    ok = isP256(csr.publicKey) && (await csr.verify(provider))
  } catch (cause) {
    throw deny('signature', 'the CSR signature could not be verified', cause)
  }
  if (!isP256(csr.publicKey)) throw deny('key', 'the CSR key must be ECDSA P-256')
  if (!ok) throw deny('signature', 'the CSR signature does not verify')
  // The requested identity must be exactly the authenticated one: one SAN extension holding
  // one URI. Anything else (DNS names, a second URI, another agent) is refused, not trimmed.
  let names: readonly x509.GeneralName[] = []
  try {
    const sans = csr.extensions.filter((e) => e.type === OID_SAN)
    if (sans.length !== 1) throw new Error('one SAN extension expected')
    names = new x509.SubjectAlternativeNameExtension(sans[0]!.rawData).names.items
  } catch (cause) {
    throw deny('identity', "the CSR must request exactly one URI SAN (the workload's SPIFFE ID)", cause)
  }
  if (names.length !== 1 || names[0]!.type !== 'url' || names[0]!.value !== expectedSpiffeId) {
    throw deny('identity', 'the CSR requests an identity other than the authenticated one')
  }
  return csr.publicKey
}

/**
 * A certificate authority for one trust domain. Holds its private key in memory; export it
 * (mode 0600) only to share it with another authority replica.
 *
 * @example
 * ```ts
 * import { CertificateAuthority, createIdentityRequest } from 'agent-trust/identity'
 * const ca = await CertificateAuthority.create({ trustDomain: 'agent-trust.local' })
 * // where the agent runs:
 * const { csr, privateKeyPem } = await createIdentityRequest({ trustDomain: ca.trustDomain, workload: { kind: 'agent', id: 'agent-summarizer-v2' } })
 * // at the authority, after authenticating the agent:
 * const issued = await ca.issue({ csr, workload: { kind: 'agent', id: 'agent-summarizer-v2' } })
 * ```
 */
export class CertificateAuthority {
  readonly trustDomain: string
  readonly certificate: x509.X509Certificate
  /** The CA certificate in PEM: the trust bundle every peer is given. */
  readonly certificatePem: string
  readonly defaultTtlSeconds: number
  readonly #signingKey: CryptoKey
  readonly #keyIdentifier: x509.AuthorityKeyIdentifierExtension

  private constructor(
    trustDomain: string,
    certificate: x509.X509Certificate,
    signingKey: CryptoKey,
    aki: x509.AuthorityKeyIdentifierExtension,
    defaultTtlSeconds: number,
  ) {
    this.trustDomain = trustDomain
    this.certificate = certificate
    this.certificatePem = certificate.toString('pem')
    this.#signingKey = signingKey
    this.#keyIdentifier = aki
    this.defaultTtlSeconds = defaultTtlSeconds
  }

  /** Generate a new CA key and self-signed root for `trustDomain`. */
  static async create(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const {
      trustDomain,
      validityDays = 365,
      defaultTtlSeconds = DEFAULT_CERTIFICATE_TTL_SECONDS,
    } = options ?? ({} as CertificateAuthorityOptions)
    if (!isTrustDomain(trustDomain)) throw new ConfigInvalid('the CA needs a trustDomain of 1-255 chars of [a-z0-9._-]')
    if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > 3650)
      throw new ConfigInvalid('validityDays must be an integer from 1 to 3650')
    checkTtl(defaultTtlSeconds)
    const keys = await generateP256()
    const now = Date.now()
    const certificate = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: randomSerial(),
        name: [{ O: [trustDomain] }, { CN: ['agent-trust CA'] }],
        notBefore: new Date(now - CERTIFICATE_BACKDATE_SECONDS * 1000),
        notAfter: new Date(now + validityDays * 86400_000),
        keys,
        signingAlgorithm: SIGNING_ALGORITHM,
        extensions: [
          // pathLen 0: the root signs leaves only, never another CA.
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          // The trust domain's own SPIFFE ID (X.509-SVID section 4.1 allows it on signing certificates).
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }], false),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
        ],
      },
      provider,
    )
    const aki = await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey, false, provider)
    return new CertificateAuthority(trustDomain, certificate, keys.privateKey, aki, defaultTtlSeconds)
  }

  /**
   * Load an exported CA (another replica's). Checks that the key belongs to the
   * certificate and that the certificate is a CA of a SPIFFE trust domain.
   */
  static async load(
    exported: { certificatePem: string; privateKeyPem: string },
    options: { defaultTtlSeconds?: number } = {},
  ): Promise<CertificateAuthority> {
    const { defaultTtlSeconds = DEFAULT_CERTIFICATE_TTL_SECONDS } = options
    checkTtl(defaultTtlSeconds)
    let certificate: x509.X509Certificate
    let key: CryptoKey
    try {
      certificate = new x509.X509Certificate(exported.certificatePem)
      key = await importPrivateKeyPem(exported.privateKeyPem)
    } catch (cause) {
      throw new ConfigInvalid('the exported CA is not a PEM certificate and PKCS#8 P-256 key', { cause })
    }
    const bc = certificate.getExtension(x509.BasicConstraintsExtension)
    if (bc?.ca !== true) throw new ConfigInvalid('the exported certificate is not a CA')
    const san = certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []
    const td =
      san.length === 1 && san[0]!.type === 'url' && san[0]!.value.startsWith('spiffe://') ? san[0]!.value.slice('spiffe://'.length) : ''
    if (!isTrustDomain(td)) throw new ConfigInvalid('the exported CA certificate carries no SPIFFE trust domain')
    // The key must be the certificate's: compare the public points.
    const priv = (await provider.subtle.exportKey('jwk', key)) as webcrypto.JsonWebKey
    const pub = (await provider.subtle.exportKey(
      'jwk',
      await certificate.publicKey.export({ ...EC_KEY_ALGORITHM }, ['verify'], provider),
    )) as webcrypto.JsonWebKey
    if (priv.x !== pub.x || priv.y !== pub.y) throw new ConfigInvalid('the exported CA key does not belong to its certificate')
    const aki = await x509.AuthorityKeyIdentifierExtension.create(certificate.publicKey, false, provider)
    return new CertificateAuthority(td, certificate, key, aki, defaultTtlSeconds)
  }

  /** Certificate and private key (PKCS#8) in PEM. Secret: store with mode 0600 or in a secret store. */
  async export(): Promise<{ certificatePem: string; privateKeyPem: string }> {
    return { certificatePem: this.certificatePem, privateKeyPem: await privateKeyToPem(this.#signingKey) }
  }

  /** The SPIFFE ID of a workload in this trust domain. */
  spiffeIdOf(workload: Workload): string {
    return spiffeIdOf(this.trustDomain, workload)
  }

  /**
   * Sign a CSR for the workload the caller authenticated. The leaf is an X.509-SVID:
   * not a CA, key usage digitalSignature, EKU serverAuth + clientAuth, exactly one URI SAN.
   * Throws `ERR_CSR_DENIED` when the CSR asks for anything else.
   */
  async issue(request: IssueRequest): Promise<IssuedCertificate> {
    let spiffeId: string
    try {
      spiffeId = spiffeIdOf(this.trustDomain, request?.workload)
    } catch (cause) {
      throw deny('identity', 'the workload cannot hold a certificate (its id is not SPIFFE-representable)', cause)
    }
    const ttl = request.ttlSeconds ?? this.defaultTtlSeconds
    try {
      checkTtl(ttl)
    } catch (cause) {
      throw deny('ttl', 'ttlSeconds must be an integer from 60 to 604800', cause)
    }
    const publicKey = await checkCertificateRequest(request.csr, spiffeId)
    const now = request.nowMs ?? Date.now()
    const backdated = now - CERTIFICATE_BACKDATE_SECONDS * 1000
    const revokedAt = request.identityRevokedAtMs
    // X.509 times have whole seconds: the next one strictly after the revocation.
    const notBefore = new Date(revokedAt !== undefined && revokedAt >= backdated ? Math.floor(revokedAt / 1000) * 1000 + 1000 : backdated)
    const notAfter = new Date(Math.min(now + ttl * 1000, this.certificate.notAfter.getTime()))
    const workload = { kind: request.workload.kind, id: request.workload.id }
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(),
        // The subject is informational; identity is the URI SAN alone (X.509-SVID section 2).
        subject: [{ O: [this.trustDomain] }, { CN: [`${workload.kind}/${workload.id}`.slice(0, 64)] }],
        issuer: this.certificate.subjectName,
        notBefore,
        notAfter,
        publicKey,
        signingKey: this.#signingKey,
        signingAlgorithm: SIGNING_ALGORITHM,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], false),
          this.#keyIdentifier,
          await x509.SubjectKeyIdentifierExtension.create(publicKey, false, provider),
        ],
      },
      provider,
    )
    return {
      certificatePem: cert.toString('pem'),
      caPem: this.certificatePem,
      spiffeId,
      workload,
      serialNumber: cert.serialNumber.toLowerCase(),
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      thumbprint: thumbprintOf(cert.rawData),
    }
  }

  /**
   * Generate a key *in this process* and issue it a certificate: for the process that holds
   * the CA itself (the authority service's own server certificate, an operator tool on the
   * CA host, tests). Agents elsewhere use {@link createIdentityRequest} and enroll.
   */
  async issueLocal(
    workload: Workload,
    options: { ttlSeconds?: number; nowMs?: number } = {},
  ): Promise<TlsCredentials & { issued: IssuedCertificate }> {
    const req = await createIdentityRequest({ trustDomain: this.trustDomain, workload })
    const issued = await this.issue({ csr: req.csr, workload, ttlSeconds: options.ttlSeconds, nowMs: options.nowMs })
    return { cert: issued.certificatePem, key: req.privateKeyPem, ca: this.certificatePem, issued }
  }
}

function checkTtl(ttl: number): void {
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_CERTIFICATE_TTL_SECONDS)
    throw new ConfigInvalid('certificate ttlSeconds must be an integer from 60 to 604800')
}

/** The SPIFFE trust domain named by a CA certificate's URI SAN (`spiffe://<domain>`), from a PEM bundle's first certificate. */
export function trustDomainOf(caPem: string): string {
  let names: readonly x509.GeneralName[] = []
  try {
    names = new x509.X509Certificate(caPem).getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []
  } catch (cause) {
    throw new ConfigInvalid('the CA bundle is not a PEM certificate', { cause })
  }
  const uri = names.length === 1 && names[0]!.type === 'url' ? names[0]!.value : ''
  const td = uri.startsWith('spiffe://') ? uri.slice('spiffe://'.length) : ''
  if (!isTrustDomain(td)) throw new ConfigInvalid('the CA certificate names no SPIFFE trust domain; pass trustDomain explicitly')
  return td
}
