/**
 * Agent identity across processes: an internal CA issuing short-lived X.509-SVID
 * certificates from CSRs, mutual-TLS options for servers and clients, and the peer's agent
 * identity for certificate-bound tokens (RFC 8705).
 *
 * Subpath: `agent-trust/identity`. Needs `@peculiar/x509` (all ASN.1 goes through it).
 *
 * @module agent-trust/identity
 */
export { AgentIdentity } from './agent-identity.js'
export type { AgentIdentityOptions, CertificateRequester } from './agent-identity.js'
export {
  CERTIFICATE_BACKDATE_SECONDS,
  CertificateAuthority,
  checkCertificateRequest,
  DEFAULT_CERTIFICATE_TTL_SECONDS,
  MAX_CERTIFICATE_TTL_SECONDS,
  trustDomainOf,
} from './ca.js'
export type { CertificateAuthorityOptions, IssuedCertificate, IssueRequest, TlsCredentials } from './ca.js'
export { createIdentityRequest } from './csr.js'
export type { IdentityRequest } from './csr.js'
export {
  assertCertificateCurrent,
  createPeerIdentity,
  guardTlsServer,
  inspectWorkloadCertificate,
  peerIdentity,
  peerIdentityFromSocket,
  tlsSocketOf,
  workloadFromSocket,
} from './peer.js'
export type { PeerRule, PeerValidationOptions, SecureServerLike, WorkloadCertificate } from './peer.js'
export { CertificateRevocationList } from './revocations.js'
export { MAX_CERTIFICATE_PAGE, MemoryCertificateRevocationStore } from '../revocation/certificates.js'
export type {
  CertificateRevocationEntry,
  CertificateRevocationPage,
  CertificateRevocationStore,
  CertificateStatus,
} from '../revocation/certificates.js'
export type { CertificateRevocationChecker, CertificateRevocationEntries, CertificateStatusInput } from './revocations.js'
export { agentSpiffeId, isSpiffeRepresentable, isTrustDomain, parseSpiffeId, spiffeIdOf, WORKLOAD_KINDS } from './spiffe.js'
export type { Workload, WorkloadKind } from './spiffe.js'
export { certificateThumbprint, MTLS_MIN_VERSION, mtlsAgentCall, mtlsClientOptions, mtlsServerOptions, tlsServerOptions } from './tls.js'
export type { AgentCallMtls, MtlsClientOptions, MtlsServerOptions, ServerExpectation } from './tls.js'
export type { PeerIdentity } from '../verifier/index.js'
