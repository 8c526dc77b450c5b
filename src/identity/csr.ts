/**
 * The agent's side of enrollment: generate a P-256 key where the agent runs and a PKCS#10
 * CSR asking for the agent's SPIFFE ID. The private key never leaves this process; only
 * the CSR (public key + proof of possession) travels to the authority.
 */
import { generateP256, privateKeyToPem, provider, SIGNING_ALGORITHM, x509 } from './internal.js'
import { spiffeIdOf, type Workload } from './spiffe.js'

export interface IdentityRequest {
  /** PKCS#10 CSR (PEM) to send to the authority. */
  readonly csr: string
  /** The new private key (PKCS#8 PEM) for `node:tls`. Keep it in this process. */
  readonly privateKeyPem: string
  /** The SPIFFE ID the CSR asks for. */
  readonly spiffeId: string
}

/**
 * Generate a fresh key and a CSR for `workload` in `trustDomain`. A new key per
 * certificate: renewal rotates the key too.
 *
 * @example
 * ```ts
 * const { csr, privateKeyPem } = await createIdentityRequest({ trustDomain: 'agent-trust.local', workload: { kind: 'agent', id: 'agent-summarizer-v2' } })
 * ```
 */
export async function createIdentityRequest(options: { trustDomain: string; workload: Workload }): Promise<IdentityRequest> {
  const spiffeId = spiffeIdOf(options.trustDomain, options.workload)
  const keys = await generateP256()
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], false)],
    },
    provider,
  )
  return { csr: csr.toString('pem'), privateKeyPem: await privateKeyToPem(keys.privateKey), spiffeId }
}
