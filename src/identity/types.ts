/**
 * The identity shapes other parts name in their own declarations (the MCP host and its mTLS
 * client take credentials and a revocation checker). Plain types with no import, so that the
 * declarations of `agent-trust/mcp` type-check without `@peculiar/x509` installed.
 */

/** PEM credentials for `node:tls` / `node:https` / undici `connect`. */
export interface TlsCredentials {
  /** The workload's certificate (PEM). */
  readonly cert: string
  /** Its private key (PKCS#8 PEM). Never leaves the process that generated it. */
  readonly key: string
  /** The trust bundle: the CA certificate(s) (PEM). */
  readonly ca: string
}

/** What revocation needs to know about a presented certificate. */
export interface CertificateStatusInput {
  readonly serialNumber: string
  readonly spiffeId: string
  readonly notBeforeMs: number
}

/** Anything that can say whether a certificate is revoked, synchronously (it runs per request). */
export interface CertificateRevocationChecker {
  isRevoked(certificate: CertificateStatusInput, nowMs?: number): boolean
}
