/**
 * `agent-trust/authority-service` as the package publishes it: loads the implementation (`./index.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `undici` or `@peculiar/x509` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '../lib/peer.js'

const m = await loadWithPeers('agent-trust/authority-service', ['undici', '@peculiar/x509'], () => import('./index.js'))

export const {
  AuthorityClient,
  AuthorityService,
  FeedPageSchema,
  PATHS,
  RevocationFeed,
  RevocationFeedStore,
  createAuthorityClient,
  createAuthorityService,
  enroll,
} = m
