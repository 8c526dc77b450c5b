/**
 * `agent-trust/identity` as the package publishes it: loads the implementation (`./index.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `@peculiar/x509` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '../lib/peer.js'

const m = await loadWithPeers('agent-trust/identity', ['@peculiar/x509'], () => import('./index.js'))

export const {
  AgentIdentity,
  CERTIFICATE_BACKDATE_SECONDS,
  CertificateAuthority,
  CertificateRevocationList,
  DEFAULT_CERTIFICATE_TTL_SECONDS,
  MAX_CERTIFICATE_PAGE,
  MAX_CERTIFICATE_TTL_SECONDS,
  MTLS_MIN_VERSION,
  MemoryCertificateRevocationStore,
  WORKLOAD_KINDS,
  agentSpiffeId,
  assertCertificateCurrent,
  certificateThumbprint,
  checkCertificateRequest,
  createIdentityRequest,
  createPeerIdentity,
  guardTlsServer,
  inspectWorkloadCertificate,
  isSpiffeRepresentable,
  isTrustDomain,
  mtlsAgentCall,
  mtlsClientOptions,
  mtlsServerOptions,
  parseSpiffeId,
  peerIdentity,
  peerIdentityFromSocket,
  spiffeIdOf,
  tlsServerOptions,
  tlsSocketOf,
  trustDomainOf,
  workloadFromSocket,
} = m
