/**
 * TLS options for mutual TLS between agents: plain objects for
 * `https.createServer` / `http2.createSecureServer`, and for `tls.connect`, `https.request`
 * or an undici `Agent({ connect })`. No undici import here: the client options are the
 * `connect` object undici passes to `tls.connect`.
 */
import { X509Certificate as NodeX509Certificate } from 'node:crypto'
import type { PeerCertificate } from 'node:tls'
import { z } from 'zod'
import { fn, parseOptions, withMethods } from '../lib/options.js'
import { trustDomainOf, type TlsCredentials } from './ca.js'
import { thumbprintOf } from './internal.js'
import { assertCertificateCurrent, inspectWorkloadCertificate } from './peer.js'
import type { CertificateRevocationChecker } from './revocations.js'
import type { Workload } from './spiffe.js'

/** TLS 1.3 only: no renegotiation (the peer of a connection never changes) and no legacy suites. */
export const MTLS_MIN_VERSION = 'TLSv1.3' as const

// PEM material: checked for shape only, never echoed (`key` is a private key).
const pem = z.string().refine((v) => v.includes('-----BEGIN'), 'expected PEM')
/** Credentials may be an identity's own object with more members (kept as given). */
const Credentials = z.looseObject({ cert: pem, key: pem, ca: pem })
const ClientCredentials = z
  .looseObject({ cert: pem.optional(), key: pem.optional(), ca: z.string().min(1, 'expected the CA bundle (PEM)') })
  .refine((c) => (c.cert === undefined) === (c.key === undefined), { message: 'expected both cert and key, or neither' })
const revocations = withMethods<CertificateRevocationChecker>('isRevoked').optional()
const now = fn<() => number>().optional()
const ServerExpectationSchema = z.union(
  [fn<(workload: Workload) => boolean>(), z.strictObject({ kind: z.enum(['agent', 'operator', 'authority']), id: z.string().min(1) })],
  { error: 'expected a workload { kind, id } or a function' },
)
const MtlsClientArgs = z.strictObject({
  credentials: ClientCredentials,
  options: z.strictObject({ trustDomain: z.string().min(1), server: ServerExpectationSchema, revocations, now }),
})
const MtlsAgentCallArgs = z.strictObject({
  credentials: z.union([fn<() => TlsCredentials>(), Credentials], {
    error: 'expected { cert, key, ca } in PEM or a function returning them',
  }),
  options: z.strictObject({ trustDomain: z.string().min(1).optional(), revocations, now }).optional(),
})

export interface MtlsServerOptions {
  readonly cert: string
  readonly key: string
  readonly ca: string
  readonly requestCert: true
  readonly rejectUnauthorized: true
  readonly minVersion: typeof MTLS_MIN_VERSION
}

/**
 * Options for a server that requires a client certificate from the CA bundle: the handshake
 * itself fails for no certificate, another CA, or an expired one. Add
 * {@link guardTlsServer} for the SVID rules and revocation, and {@link createPeerIdentity}
 * to get the caller's agent id per request.
 *
 * @example
 * ```ts
 * const server = https.createServer(mtlsServerOptions(credentials), handler)
 * guardTlsServer(server, { trustDomain, revocations })
 * ```
 */
export function mtlsServerOptions(credentials: TlsCredentials): MtlsServerOptions {
  checkCredentials(credentials, 'mtlsServerOptions')
  return Object.freeze({
    cert: credentials.cert,
    key: credentials.key,
    // Only our CA: giving `ca` replaces Node's public roots, so no public CA can vouch for an agent.
    ca: credentials.ca,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: MTLS_MIN_VERSION,
  })
}

/** Which server identities a client accepts. */
export type ServerExpectation = Workload | ((workload: Workload) => boolean)

export interface MtlsClientOptions {
  readonly cert?: string
  readonly key?: string
  readonly ca: string
  readonly rejectUnauthorized: true
  readonly minVersion: typeof MTLS_MIN_VERSION
  readonly checkServerIdentity: (hostname: string, cert: PeerCertificate) => Error | undefined
}

/**
 * Options for a client: present our certificate, trust only the CA bundle, and check the
 * *server's* SPIFFE ID instead of its host name (agent certificates carry no DNS names).
 * Pass as undici's `connect` (`new Agent({ connect: mtlsClientOptions(...) })`) or to
 * `https.request`. Without `cert`/`key` it is plain server-authenticated TLS (enrollment).
 */
export function mtlsClientOptions(
  credentials: Partial<Pick<TlsCredentials, 'cert' | 'key'>> & Pick<TlsCredentials, 'ca'>,
  options: { trustDomain: string; server: ServerExpectation; revocations?: CertificateRevocationChecker; now?: () => number },
): MtlsClientOptions {
  parseOptions('mtlsClientOptions', MtlsClientArgs, { credentials, options })
  const { trustDomain, server, revocations, now } = options
  const accepts = typeof server === 'function' ? server : (w: Workload) => w.kind === server.kind && w.id === server.id
  const checkServerIdentity = (_hostname: string, cert: PeerCertificate): Error | undefined => {
    try {
      if (!Buffer.isBuffer(cert?.raw)) throw new TypeError('no server certificate')
      const c = inspectWorkloadCertificate(cert.raw, trustDomain, 'server')
      assertCertificateCurrent(c, { revocations, nowMs: now?.() })
      if (!accepts(c.workload)) {
        return Object.assign(new Error('the server is not the expected workload'), {
          code: 'ERR_PEER_UNAUTHENTICATED',
          rule: 'server-identity',
        })
      }
      return undefined
    } catch (e) {
      // Returned, not thrown: Node then fails the handshake with this error.
      return e instanceof Error ? e : new Error('the server certificate is not valid')
    }
  }
  return Object.freeze({
    ...(credentials.cert === undefined ? {} : { cert: credentials.cert, key: credentials.key }),
    ca: credentials.ca,
    rejectUnauthorized: true,
    minVersion: MTLS_MIN_VERSION,
    checkServerIdentity,
  })
}

/** Server options without client certificates (the enrollment listener: agents have none yet). */
export function tlsServerOptions(credentials: TlsCredentials): { cert: string; key: string; minVersion: typeof MTLS_MIN_VERSION } {
  checkCredentials(credentials, 'tlsServerOptions')
  return Object.freeze({ cert: credentials.cert, key: credentials.key, minVersion: MTLS_MIN_VERSION })
}

function checkCredentials(c: TlsCredentials, factory: string): void {
  parseOptions(factory, z.strictObject({ credentials: Credentials }), { credentials: c })
}

/**
 * RFC 8705 `x5t#S256` of a PEM certificate (the first one of the PEM): what a token bound to
 * it carries in `cnf`, and what a peer presenting it is checked against. Throws `TypeError`
 * for anything but a PEM certificate.
 */
export function certificateThumbprint(pem: string): string {
  let der: Buffer
  try {
    der = new NodeX509Certificate(pem).raw
  } catch (cause) {
    throw new TypeError('expected a PEM certificate', { cause })
  }
  return thumbprintOf(der)
}

/** What {@link mtlsAgentCall} gives an agent-to-agent client (`createAgentCallDispatcher({ tls })` in `agent-trust/egress`). */
export interface AgentCallMtls {
  /** TLS options for a new connection to one target agent: our certificate, the CA bundle, and that agent's SPIFFE ID as the only acceptable server. */
  connect(target: { readonly agentId: string }): MtlsClientOptions
  /** The thumbprint of the certificate {@link connect} presents now: tokens are bound to it. */
  certificateThumbprint(): string
}

/**
 * Mutual TLS for agent-to-agent HTTP: each connection to a registered agent presents this
 * agent's certificate and accepts only a server certificate naming *that* agent
 * (`spiffe://<domain>/agent/<target>`), so a token minted for one agent is never sent to
 * another one's endpoint. `credentials` may be a function (`() => identity.credentials`),
 * read at every new connection; see the renewal note in docs/identity.md.
 *
 * @example
 * ```ts
 * const dispatcher = createAgentCallDispatcher({ issuer, subject: 'agent-summarizer-v2', targets: manifest, context,
 *   tls: mtlsAgentCall(() => identity.credentials) })
 * ```
 */
export function mtlsAgentCall(
  credentials: TlsCredentials | (() => TlsCredentials),
  options: { trustDomain?: string; revocations?: CertificateRevocationChecker; now?: () => number } = {},
): AgentCallMtls {
  parseOptions('mtlsAgentCall', MtlsAgentCallArgs, { credentials, options })
  const read = (): TlsCredentials => (typeof credentials === 'function' ? credentials() : credentials)
  let cached: { creds: TlsCredentials; trustDomain: string; thumbprint: string; byTarget: Map<string, MtlsClientOptions> } | undefined
  const current = () => {
    const creds = read()
    if (cached?.creds !== creds) {
      checkCredentials(creds, 'mtlsAgentCall')
      cached = {
        creds,
        trustDomain: options.trustDomain ?? trustDomainOf(creds.ca),
        thumbprint: certificateThumbprint(creds.cert),
        byTarget: new Map(),
      }
    }
    return cached
  }
  return Object.freeze({
    connect(target: { readonly agentId: string }): MtlsClientOptions {
      const c = current()
      let o = c.byTarget.get(target.agentId)
      if (o === undefined) {
        // The same object for the same credentials and target, so the caller can reuse one connector.
        o = mtlsClientOptions(c.creds, {
          trustDomain: c.trustDomain,
          server: { kind: 'agent', id: target.agentId },
          revocations: options.revocations,
          now: options.now,
        })
        c.byTarget.set(target.agentId, o)
      }
      return o
    },
    certificateThumbprint: () => current().thumbprint,
  })
}
