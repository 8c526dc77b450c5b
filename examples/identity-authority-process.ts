/**
 * Child process of the identity scenario: the authority. It holds the signing keys, the
 * manifest and the CA, and serves them over mutual TLS. It never sees an agent's private key.
 */
import { Authority, MemoryAuditLog } from 'agent-trust'
import { createAuthorityService, RevocationFeed } from 'agent-trust/authority-service'
import { CertificateAuthority } from 'agent-trust/identity'
import { serve } from './identity-ipc.js'
import { SEED_MANIFEST } from './seed-manifest.js'

const audit = new MemoryAuditLog()
const feed = new RevocationFeed()
const authority = await Authority.create({ manifest: SEED_MANIFEST, store: feed, audit })
const ca = await CertificateAuthority.create({ trustDomain: authority.manifest.trustDomain })
const service = await createAuthorityService({ authority, ca, audit })
const url = await service.listen()
const enrollUrl = await service.listenEnrollment()

serve({
  // The operator console: these run on the authority host, not over the network.
  'enrollment-token': async ({ agentId }: { agentId: string }) => service.createEnrollmentToken(agentId),
  revoke: async ({ agentId }: { agentId: string }) => service.revokeAgent(agentId, { by: 'operator (console)' }),
  audit: async () => ({ events: audit.events.length, denied: audit.events.filter((e) => e.decision === 'deny').length }),
})
process.on('SIGTERM', () => {
  void service.close().finally(() => process.exit(0))
})
process.send?.({ type: 'ready', url, enrollUrl, ca: ca.certificatePem, authorityId: authority.id, trustDomain: ca.trustDomain })
