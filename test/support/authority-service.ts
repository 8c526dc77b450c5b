import { Authority, MemoryAuditLog, type ReplayRevocationStore } from 'agent-trust'
import {
  createAuthorityClient,
  createAuthorityService,
  RevocationFeed,
  type AuthorityClient,
  type AuthorityService,
} from 'agent-trust/authority-service'
import type { CertificateAuthority, TlsCredentials } from 'agent-trust/identity'
import { makeCa, MANIFEST } from './identity.js'

export interface ServiceFixture {
  readonly ca: CertificateAuthority
  readonly authority: Authority
  readonly feed: RevocationFeed
  readonly service: AuthorityService
  readonly audit: MemoryAuditLog
  readonly url: string
  readonly enrollUrl: string
  readonly clients: AuthorityClient[]
  client(tls: TlsCredentials | (() => TlsCredentials), url?: string | string[]): AuthorityClient
  credentials(id: string, kind?: 'agent' | 'operator'): Promise<TlsCredentials & { issued: { thumbprint: string; serialNumber: string } }>
  close(): Promise<void>
}

export async function startService(
  options: {
    ca?: CertificateAuthority
    store?: ReplayRevocationStore
    keys?: Parameters<typeof Authority.create>[0]['keys']
    operators?: string[]
  } = {},
): Promise<ServiceFixture> {
  const ca = options.ca ?? (await makeCa())
  const feed = new RevocationFeed(options.store)
  const audit = new MemoryAuditLog()
  const authority = await Authority.create({
    manifest: MANIFEST,
    store: feed,
    audit,
    ...(options.keys === undefined ? {} : { keys: options.keys }),
  })
  const service = await createAuthorityService({ authority, ca, operators: options.operators ?? ['alice'], audit })
  const url = await service.listen()
  const enrollUrl = await service.listenEnrollment()
  const clients: AuthorityClient[] = []
  return {
    ca,
    authority,
    feed,
    service,
    audit,
    url,
    enrollUrl,
    clients,
    client(tls, u) {
      const c = createAuthorityClient({ url: u ?? url, tls, timeoutMs: 3000 })
      clients.push(c)
      return c
    },
    credentials: (id, kind = 'agent') => ca.issueLocal({ kind, id }),
    async close() {
      await Promise.all(clients.splice(0).map((c) => c.close()))
      await service.close()
    },
  }
}
