/**
 * `agent-trust/authority-service` in one process: the authority behind mutual TLS, an agent
 * using it through the client (a `CapabilityIssuer`), and a verifier elsewhere that learns
 * revocations from the authority's feed within a stated bound.
 *
 * Prerequisites: `npm install`.
 * Run: `npx tsx --conditions=agent-trust-source examples/identity-authority-service.ts`
 */
import { Authority, createVerifier } from 'agent-trust'
import { createAuthorityClient, createAuthorityService, RevocationFeed, RevocationFeedStore } from 'agent-trust/authority-service'
import { CertificateAuthority } from 'agent-trust/identity'
import { CONTEXT, SEED_MANIFEST } from './seed-manifest.js'

// The authority host.
const authority = await Authority.create({ manifest: SEED_MANIFEST, store: new RevocationFeed() })
const ca = await CertificateAuthority.create({ trustDomain: authority.manifest.trustDomain })
const service = await createAuthorityService({ authority, ca })
const url = await service.listen({ port: 0 })

// An agent: its certificate is its identity; the client is a drop-in CapabilityIssuer.
const orchestrator = await ca.issueLocal({ kind: 'agent', id: 'moltbot-orchestrator' })
const issuer = createAuthorityClient({ url, tls: orchestrator, authorityId: authority.id })
const { token } = await issuer.mintForTool({
  subject: 'moltbot-orchestrator',
  audience: 'agent-database-reader',
  tool: 'read_documents',
  args: { namespace: 'user-123' },
  context: CONTEXT,
})

// The database reader, in another process in real life: keys and revocations from the feed.
const readerCreds = await ca.issueLocal({ kind: 'agent', id: 'agent-database-reader' })
const readerClient = createAuthorityClient({ url, tls: readerCreds, authorityId: authority.id })
const feed = await RevocationFeedStore.start({ source: readerClient, pollIntervalMs: 100, maxStalenessMs: 1000 })
const verifier = createVerifier({ id: 'agent-database-reader', issuers: [feed.trustedIssuer()], store: feed, mode: 'enforce' })
const peer = { agentId: 'moltbot-orchestrator', certificateThumbprint: orchestrator.issued.thumbprint }

const cap = await verifier.verify(token, { scope: 'db:read:documents:namespace:user-123', operation: 'read', peer })
console.log(`allowed: ${cap.presenter} read user-123`)

const next = (
  await issuer.mintForTool({
    subject: 'moltbot-orchestrator',
    audience: 'agent-database-reader',
    tool: 'read_documents',
    args: { namespace: 'user-123' },
    context: CONTEXT,
  })
).token
await service.revokeAgent('moltbot-orchestrator', { by: 'operator' })
await feed.syncNow() // the next poll (at most pollIntervalMs away) delivers it; here, now
await verifier
  .verify(next, { scope: 'db:read:documents:namespace:user-123', operation: 'read', peer })
  .catch((e: { code: string }) => console.log(`denied ${e.code}: revoked at the authority, learned from the feed`))

await Promise.all([issuer.close(), readerClient.close(), feed.close()])
await service.close()
