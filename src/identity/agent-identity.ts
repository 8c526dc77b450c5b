/**
 * An agent's certificate life cycle where the agent runs: generate a key, obtain a
 * certificate for a CSR (enrollment), renew it before it expires (a new key each time),
 * and hand the current credentials to TLS servers and clients.
 */
import { createPrivateKey, X509Certificate as NodeX509Certificate } from 'node:crypto'
import { z } from 'zod'
import { CertificateRequestDenied } from '../errors.js'
import { fn, parseOptions } from '../lib/options.js'
import type { TlsCredentials } from './ca.js'
import { createIdentityRequest } from './csr.js'
import { x509 } from './internal.js'
import { inspectWorkloadCertificate, type WorkloadCertificate } from './peer.js'
import { isSpiffeRepresentable, isTrustDomain, WORKLOAD_KINDS, type Workload } from './spiffe.js'

/** Something that turns a CSR into a certificate: the authority client's `enroll` or `renewCertificate`. */
export type CertificateRequester = (csr: string) => Promise<{ readonly certificatePem: string; readonly caPem: string }>

export interface AgentIdentityOptions {
  readonly trustDomain: string
  /** Usually `{ kind: 'agent', id }`. */
  readonly workload: Workload
  /** First certificate (e.g. enrollment with a join token). */
  readonly obtain: CertificateRequester
  /** Later certificates (mTLS renewal with the current one). Default: `obtain`. */
  readonly renew?: CertificateRequester
  /** Renew once this fraction of the lifetime has passed. Default 0.5 (as SPIRE does). */
  readonly renewAtFraction?: number
}

const requester = fn<CertificateRequester>()
/** {@link AgentIdentityOptions}, checked once before the first CSR is made. */
const AgentIdentityOptionsSchema = z.strictObject({
  trustDomain: z.string().refine(isTrustDomain, 'expected a SPIFFE trust domain (1-255 chars of [a-z0-9._-])'),
  workload: z.strictObject({
    kind: z.enum(WORKLOAD_KINDS),
    // The id goes into the certificate's SPIFFE ID, so it must be representable there.
    id: z.string().refine(isSpiffeRepresentable, 'expected an id of "/"-separated segments of [A-Za-z0-9._-]'),
  }),
  obtain: requester,
  renew: requester.optional(),
  // Renewing at 0 loops; at 1 or later the certificate has expired first.
  renewAtFraction: z.number().gt(0).lt(1).optional(),
})

/**
 * @example
 * ```ts
 * const identity = await AgentIdentity.obtain({ trustDomain, workload: { kind: 'agent', id: 'agent-summarizer-v2' },
 *   obtain: (csr) => enroll({ url, ca, token: joinToken, csr }), renew: (csr) => client.renewCertificate(csr) })
 * const stop = identity.startAutoRenew()
 * ```
 */
export class AgentIdentity {
  readonly trustDomain: string
  readonly workload: Workload
  readonly renewAtFraction: number
  #credentials!: TlsCredentials
  #certificate!: WorkloadCertificate
  readonly #obtain: CertificateRequester
  readonly #renew: CertificateRequester
  readonly #listeners = new Set<(credentials: TlsCredentials) => void>()

  private constructor(input: AgentIdentityOptions) {
    const options = parseOptions('AgentIdentity.obtain', AgentIdentityOptionsSchema, input)
    this.trustDomain = options.trustDomain
    this.workload = Object.freeze({ kind: options.workload.kind, id: options.workload.id })
    this.#obtain = options.obtain
    this.#renew = options.renew ?? options.obtain
    this.renewAtFraction = options.renewAtFraction ?? 0.5
  }

  static async obtain(options: AgentIdentityOptions): Promise<AgentIdentity> {
    const identity = new AgentIdentity(options)
    await identity.#request(identity.#obtain)
    return identity
  }

  /** The current certificate, key and CA bundle (PEM). Read it at each use: renewal replaces it. */
  get credentials(): TlsCredentials {
    return this.#credentials
  }

  /** The current certificate's identity, thumbprint and validity. */
  get certificate(): WorkloadCertificate {
    return this.#certificate
  }

  /** When {@link startAutoRenew} renews, epoch ms. */
  get renewAtMs(): number {
    const c = this.#certificate
    return c.notBeforeMs + (c.notAfterMs - c.notBeforeMs) * this.renewAtFraction
  }

  /** New key, new CSR, new certificate, now. */
  async renew(): Promise<void> {
    await this.#request(this.#renew)
  }

  /** Called with the new credentials after each renewal (e.g. `server.setSecureContext`). */
  onChange(listener: (credentials: TlsCredentials) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /**
   * Renew at {@link renewAtMs}, then keep doing so; on failure retry every `retryMs` until the
   * certificate expires (after which TLS peers refuse the agent: fail closed). Returns `stop`.
   */
  startAutoRenew(options: { onError?: (error: unknown) => void; retryMs?: number } = {}): () => void {
    const { onError, retryMs = 30_000 } = options
    let timer: NodeJS.Timeout | undefined
    let stopped = false
    const arm = (delayMs: number): void => {
      if (stopped) return
      // setTimeout holds at most 2^31-1 ms; re-arm for longer waits.
      timer = setTimeout(tick, Math.min(Math.max(0, delayMs), 2 ** 31 - 1))
      timer.unref()
    }
    const tick = (): void => {
      if (Date.now() < this.renewAtMs) return arm(this.renewAtMs - Date.now())
      this.renew().then(
        () => arm(this.renewAtMs - Date.now()),
        (e: unknown) => {
          onError?.(e)
          arm(retryMs)
        },
      )
    }
    arm(this.renewAtMs - Date.now())
    return () => {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
    }
  }

  async #request(requester: CertificateRequester): Promise<void> {
    const req = await createIdentityRequest({ trustDomain: this.trustDomain, workload: this.workload })
    const res = await requester(req.csr)
    // Check what came back before using it: our identity, our key.
    let inspected: WorkloadCertificate
    try {
      inspected = inspectWorkloadCertificate(new Uint8Array(x509.PemConverter.decodeFirst(res.certificatePem)), this.trustDomain, 'client')
      if (!new NodeX509Certificate(res.certificatePem).checkPrivateKey(createPrivateKey(req.privateKeyPem))) throw new Error('key mismatch')
    } catch (cause) {
      throw new CertificateRequestDenied('the certificate received does not match the request', { cause, details: { rule: 'response' } })
    }
    if (inspected.workload.kind !== this.workload.kind || inspected.workload.id !== this.workload.id) {
      throw new CertificateRequestDenied('the certificate received names another identity', { details: { rule: 'response' } })
    }
    this.#credentials = Object.freeze({ cert: res.certificatePem, key: req.privateKeyPem, ca: res.caPem })
    this.#certificate = inspected
    for (const l of this.#listeners) l(this.#credentials)
  }
}
