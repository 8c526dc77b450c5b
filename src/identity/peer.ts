/**
 * Who is on the other end of a TLS connection.
 *
 * Node verifies the chain against the CA bundle and the validity dates during the
 * handshake (`requestCert` + `rejectUnauthorized`). It does not know what an agent is: this
 * module adds the X.509-SVID rules (exactly one URI SAN, a SPIFFE ID of our trust domain,
 * not a CA, digitalSignature, the right EKU), the time check again on every request (a
 * keep-alive connection outlives its certificate) and revocation (Node checks no CRL
 * unless given one). Every failure is `ERR_PEER_UNAUTHENTICATED` with `details.rule`.
 */
import { X509Certificate as NodeX509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'
import { z } from 'zod'
import { AgentTrustError, PeerForbidden, PeerUnauthenticated } from '../errors.js'
import { fn, parseOptions, withMethods } from '../lib/options.js'
import type { PeerIdentity } from '../verifier/index.js'
import { OID_BASIC_CONSTRAINTS, OID_EXT_KEY_USAGE, OID_KEY_USAGE, OID_SAN, thumbprintOf, x509 } from './internal.js'
import type { CertificateRevocationChecker } from './revocations.js'
import { isTrustDomain, parseSpiffeId, WORKLOAD_KINDS, type Workload, type WorkloadKind } from './spiffe.js'

/** A certificate that passed the structural X.509-SVID checks. */
export interface WorkloadCertificate {
  readonly workload: Workload
  readonly spiffeId: string
  /** Lowercase hex. */
  readonly serialNumber: string
  readonly notBeforeMs: number
  readonly notAfterMs: number
  /** RFC 8705 `x5t#S256`: base64url SHA-256 of the DER. */
  readonly thumbprint: string
}

export interface PeerValidationOptions {
  /** Only SPIFFE IDs of this trust domain are accepted. */
  readonly trustDomain: string
  /** Revoked certificates and identities (the authority's list, or a feed-fed copy). */
  readonly revocations?: CertificateRevocationChecker
  /**
   * The trust bundle (PEM). When given, the peer's issuer must be one of these certificates,
   * even if the TLS server was (mis)configured to trust more CAs.
   */
  readonly ca?: string
  /** Accepted workload kinds. Default `['agent']`. */
  readonly kinds?: readonly WorkloadKind[]
  /** Clock (epoch ms), for tests. */
  readonly now?: () => number
}

/** {@link PeerValidationOptions}, checked once by the factories that bind them. */
const PeerValidationShape = {
  trustDomain: z.string().refine(isTrustDomain, 'expected a SPIFFE trust domain (1-255 chars of [a-z0-9._-])'),
  revocations: withMethods<CertificateRevocationChecker>('isRevoked').optional(),
  ca: z
    .string()
    .refine((v) => v.includes('-----BEGIN CERTIFICATE-----'), 'expected a PEM certificate bundle')
    .optional(),
  kinds: z.array(z.enum(WORKLOAD_KINDS)).min(1).readonly().optional(),
  now: fn<() => number>().optional(),
}
const PeerIdentityOptionsSchema = z.strictObject({
  ...PeerValidationShape,
  // A peer identity is an agent's (the verifier binds tokens to agents): no other kind.
  kinds: z
    .tuple([z.literal('agent')], { error: "expected ['agent'] (a peer identity is an agent's)" })
    .readonly()
    .optional(),
})
const GuardTlsServerArgsSchema = z.strictObject({
  server: withMethods<SecureServerLike>('prependListener', 'off'),
  options: z.strictObject({ ...PeerValidationShape, onRefused: fn().optional() }),
})

export type PeerRule =
  'not-tls' | 'missing' | 'untrusted' | 'malformed' | 'ca' | 'key-usage' | 'san' | 'trust-domain' | 'expired' | 'not-yet-valid' | 'revoked'

function refuse(rule: PeerRule, message: string, cause?: unknown): PeerUnauthenticated {
  return new PeerUnauthenticated(message, { details: { rule }, ...(cause === undefined ? {} : { cause }) })
}

/**
 * Structural X.509-SVID checks on a DER leaf certificate (no chain, time or revocation).
 * `usage` is what the certificate is presented for: `client` (a caller) or `server`.
 */
export function inspectWorkloadCertificate(
  der: Uint8Array,
  trustDomain: string,
  usage: 'client' | 'server' = 'client',
): WorkloadCertificate {
  try {
    return inspect(der, trustDomain, usage)
  } catch (e) {
    // Whatever the parser throws on hostile DER is a refusal, never an uncoded error.
    throw e instanceof PeerUnauthenticated ? e : refuse('malformed', 'the peer certificate could not be parsed', e)
  }
}

function inspect(der: Uint8Array, trustDomain: string, usage: 'client' | 'server'): WorkloadCertificate {
  let cert: x509.X509Certificate
  try {
    cert = new x509.X509Certificate(der)
  } catch (cause) {
    throw refuse('malformed', 'the peer certificate could not be parsed', cause)
  }
  const count = (oid: string) => cert.extensions.filter((e) => e.type === oid).length
  // A duplicated extension is a parser-confusion attempt: refuse rather than pick one.
  if (count(OID_BASIC_CONSTRAINTS) !== 1) throw refuse('ca', 'the peer certificate must carry one basicConstraints extension with cA false')
  const bc = cert.getExtension(x509.BasicConstraintsExtension)
  if (bc === null || bc.ca) throw refuse('ca', 'the peer certificate is a CA certificate')
  if (count(OID_KEY_USAGE) !== 1) throw refuse('key-usage', 'the peer certificate must carry one keyUsage extension')
  const ku = cert.getExtension(x509.KeyUsagesExtension)
  const forbidden = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
  if (ku === null || (ku.usages & x509.KeyUsageFlags.digitalSignature) === 0 || (ku.usages & forbidden) !== 0) {
    throw refuse('key-usage', 'the peer certificate key usage must be digitalSignature and must not sign certificates')
  }
  const ekuCount = count(OID_EXT_KEY_USAGE)
  if (ekuCount > 1) throw refuse('key-usage', 'the peer certificate has duplicated extended key usages')
  if (ekuCount === 1) {
    const wanted = usage === 'client' ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)
    if (eku === null || !eku.usages.includes(wanted))
      throw refuse('key-usage', `the peer certificate is not valid for TLS ${usage} authentication`)
  }
  if (count(OID_SAN) !== 1) throw refuse('san', 'the peer certificate must carry exactly one subjectAltName extension')
  let names: readonly x509.GeneralName[]
  try {
    names = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []
  } catch (cause) {
    throw refuse('san', 'the peer certificate subjectAltName could not be parsed', cause)
  }
  if (names.length !== 1 || names[0]!.type !== 'url')
    throw refuse('san', 'the peer certificate must carry exactly one URI SAN and no other name')
  const uri = names[0]!.value
  const workload = parseSpiffeId(uri, trustDomain)
  if (workload === undefined) {
    throw uri.startsWith('spiffe://') && !uri.startsWith(`spiffe://${trustDomain}/`)
      ? refuse('trust-domain', 'the peer certificate belongs to another trust domain')
      : refuse('san', 'the peer certificate URI SAN is not an agent-trust SPIFFE ID')
  }
  return {
    workload,
    spiffeId: uri,
    serialNumber: cert.serialNumber.toLowerCase(),
    notBeforeMs: cert.notBefore.getTime(),
    notAfterMs: cert.notAfter.getTime(),
    thumbprint: thumbprintOf(der),
  }
}

/** Time and revocation: re-checked on every request, since connections outlive certificates. */
export function assertCertificateCurrent(
  c: WorkloadCertificate,
  options: { revocations?: CertificateRevocationChecker; nowMs?: number } = {},
): void {
  const now = options.nowMs ?? Date.now()
  if (now < c.notBeforeMs) throw refuse('not-yet-valid', 'the peer certificate is not valid yet')
  if (now >= c.notAfterMs) throw refuse('expired', 'the peer certificate has expired')
  if (options.revocations?.isRevoked(c, now) === true) throw refuse('revoked', 'the peer certificate has been revoked')
}

interface CachedPeer {
  readonly key: string
  readonly result: WorkloadCertificate | PeerUnauthenticated
}

// One parse per connection: @peculiar/x509 costs about a millisecond per certificate, and
// TLS 1.3 (which the helpers require) has no renegotiation, so the peer cannot change.
const socketCache = new WeakMap<object, CachedPeer>()
// What the structural verdict depends on, memoised per options object (hooks reuse theirs).
const keyCache = new WeakMap<object, { client?: string; server?: string }>()

function validationKey(options: PeerValidationOptions, usage: 'client' | 'server'): string {
  let k = keyCache.get(options)
  if (k === undefined) keyCache.set(options, (k = {}))
  return (k[usage] ??= `${options.trustDomain}|${usage}|${options.ca ?? ''}`)
}
const bundleCache = new Map<string, ReadonlySet<string>>()

function bundleFingerprints(pem: string): ReadonlySet<string> {
  let set = bundleCache.get(pem)
  if (set === undefined) {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
    set = new Set(blocks.map((b) => new NodeX509Certificate(b).fingerprint256))
    if (bundleCache.size > 32) bundleCache.clear()
    bundleCache.set(pem, set)
  }
  return set
}

const EXPIRY_ERRORS = new Set(['CERT_HAS_EXPIRED'])
const NOT_YET_ERRORS = new Set(['CERT_NOT_YET_VALID'])

function inspectSocket(socket: TLSSocket, options: PeerValidationOptions, usage: 'client' | 'server'): WorkloadCertificate {
  const cert = socket.getPeerCertificate(options.ca !== undefined)
  if (cert === null || typeof cert !== 'object' || !Buffer.isBuffer(cert.raw)) throw refuse('missing', 'the peer presented no certificate')
  if (socket.authorized !== true) {
    // Node sets `authorizationError` to the OpenSSL code string (typed as Error).
    const ae = (socket as { authorizationError?: unknown }).authorizationError
    const reason = typeof ae === 'object' && ae !== null ? String((ae as { code?: unknown }).code ?? '') : String(ae ?? '')
    if (EXPIRY_ERRORS.has(reason)) throw refuse('expired', 'the peer certificate has expired')
    if (NOT_YET_ERRORS.has(reason)) throw refuse('not-yet-valid', 'the peer certificate is not valid yet')
    throw refuse('untrusted', 'the peer certificate is not issued by the trusted CA')
  }
  if (options.ca !== undefined) {
    const issuer = (cert as DetailedPeerCertificate).issuerCertificate as DetailedPeerCertificate | undefined
    if (issuer === undefined || issuer === null || !bundleFingerprints(options.ca).has(issuer.fingerprint256)) {
      throw refuse('untrusted', 'the peer certificate is not issued by the trusted CA')
    }
  }
  return inspectWorkloadCertificate(cert.raw, options.trustDomain, usage)
}

/**
 * The validated workload certificate of a TLS socket's peer. Throws
 * `ERR_PEER_UNAUTHENTICATED` (no certificate, untrusted, not an X.509-SVID of the trust
 * domain, expired, revoked) or `ERR_PEER_FORBIDDEN` (a valid identity of a kind not in
 * `kinds`). Structural checks run once per connection; time and revocation every call.
 */
export function workloadFromSocket(
  socket: TLSSocket,
  options: PeerValidationOptions,
  usage: 'client' | 'server' = 'client',
): WorkloadCertificate {
  if (socket === null || typeof socket !== 'object' || typeof (socket as Partial<TLSSocket>).getPeerCertificate !== 'function') {
    throw refuse('not-tls', 'the connection is not TLS: no peer certificate to authenticate')
  }
  let cached = socketCache.get(socket)
  const key = validationKey(options, usage)
  if (cached === undefined || cached.key !== key) {
    let result: WorkloadCertificate | PeerUnauthenticated
    try {
      result = inspectSocket(socket, options, usage)
    } catch (e) {
      result = e instanceof PeerUnauthenticated ? e : refuse('malformed', 'the peer certificate could not be validated', e)
    }
    cached = { key, result }
    socketCache.set(socket, cached)
  }
  if (cached.result instanceof PeerUnauthenticated) throw cached.result
  const c = cached.result
  const kinds = options.kinds ?? ['agent']
  if (!kinds.includes(c.workload.kind)) {
    throw new PeerForbidden(`a ${c.workload.kind} certificate may not be used here`, { details: { rule: 'kind', kind: c.workload.kind } })
  }
  assertCertificateCurrent(c, { revocations: options.revocations, nowMs: options.now?.() })
  return c
}

/**
 * The agent identity of a TLS socket's peer, for the verifier's binding check: `{agentId, certificateThumbprint}`. Throws like {@link workloadFromSocket}.
 */
export function peerIdentityFromSocket(socket: TLSSocket, options: PeerValidationOptions): PeerIdentity {
  const c = workloadFromSocket(socket, { ...options, kinds: ['agent'] })
  return { agentId: c.workload.id, certificateThumbprint: c.thumbprint }
}

/** The TLS socket under an HTTP/1.1 request or an HTTP/2 compatibility request. */
export function tlsSocketOf(req: unknown): TLSSocket | undefined {
  const r = req as { socket?: unknown; stream?: { session?: { socket?: unknown } } } | null | undefined
  const s = r?.socket ?? r?.stream?.session?.socket
  return (s ?? undefined) as TLSSocket | undefined
}

/** A request's peer identity; throws `ERR_PEER_UNAUTHENTICATED` when there is no valid one. */
export function peerIdentity(req: unknown, options: PeerValidationOptions): PeerIdentity {
  return peerIdentityFromSocket(tlsSocketOf(req) as TLSSocket, options)
}

/**
 * The hook the adapters accept (`peerIdentity(req) => PeerIdentity`): bind the options once.
 * It throws (never returns `undefined`) when the peer is not a valid agent, so an adapter
 * that lets the error propagate denies the call with a coded error: fail closed.
 *
 * @example
 * ```ts
 * const peer = createPeerIdentity({ trustDomain: 'agent-trust.local', revocations: feed.certificates })
 * https.createServer(mtlsServerOptions(credentials), async (req, res) => {
 *   await verifier.verify(token, { scope, operation: 'read', peer: peer(req) })
 * })
 * ```
 */
export function createPeerIdentity(options: PeerValidationOptions): (req: unknown) => PeerIdentity {
  parseOptions('createPeerIdentity', PeerIdentityOptionsSchema, options)
  const frozen = Object.freeze({ ...options, kinds: ['agent'] as const })
  return function peerIdentityOf(req: unknown): PeerIdentity {
    return peerIdentity(req, frozen)
  }
}

/** Anything that emits `secureConnection` with a TLS socket: `https.Server`, `http2.Http2SecureServer`, `tls.Server`. */
export interface SecureServerLike {
  prependListener(event: 'secureConnection', listener: (socket: TLSSocket) => void): unknown
  off(event: 'secureConnection', listener: (socket: TLSSocket) => void): unknown
}

/**
 * Refuse invalid peers right after the handshake, before any HTTP byte is read: the socket
 * is destroyed. Complements `rejectUnauthorized` (chain and dates) with the SVID rules and
 * revocation. Returns a function that removes the guard.
 */
export function guardTlsServer(
  server: SecureServerLike,
  options: PeerValidationOptions & { onRefused?: (error: AgentTrustError, socket: TLSSocket) => void },
): () => void {
  parseOptions('guardTlsServer', GuardTlsServerArgsSchema, { server, options })
  const { onRefused, ...validation } = options
  const listener = (socket: TLSSocket): void => {
    try {
      workloadFromSocket(socket, validation)
    } catch (e) {
      // Destroy first: nothing of this peer is read, whatever the callback does.
      socket.destroy()
      try {
        onRefused?.(e instanceof AgentTrustError ? e : refuse('malformed', 'the peer could not be validated', e), socket)
      } catch {
        // A failing audit callback must not take the server down.
      }
    }
  }
  // First in line: the HTTP server's own listener attaches the parser, which may dispatch a
  // request already in the TLS buffer (TLS 1.3 clients send it with their Finished).
  server.prependListener('secureConnection', listener)
  return () => {
    server.off('secureConnection', listener)
  }
}
