/**
 * The authority as a service: an mTLS HTTPS server in front of
 * an `Authority`, its client (a `CapabilityIssuer`), and the revocation feed that
 * carries revocations to verifiers in other processes within a stated bound.
 *
 * Subpath: `agent-trust/authority-service`. Needs `undici` (client) and `@peculiar/x509`.
 *
 * @module agent-trust/authority-service
 */
export { AuthorityClient, createAuthorityClient, enroll } from './client.js'
export type { AuthorityClientOptions } from './client.js'
export { RevocationFeed } from './feed.js'
export type { FeedEntry, FeedPage } from './feed.js'
export { FeedPageSchema, RevocationFeedStore } from './feed-store.js'
export type { FeedSource, RevocationFeedStoreOptions } from './feed-store.js'
export { AuthorityService, createAuthorityService } from './server.js'
export type { AuthorityServiceOptions } from './server.js'
export { PATHS } from './wire.js'
