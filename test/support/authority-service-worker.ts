/**
 * An authority service in its own process, driven over IPC by the certificate revocation
 * tests: a real `AuthorityService` over the Redis store and a Redis key store shared with
 * its siblings, with a CA loaded from the same export. Replies with its API URL.
 * Run with: node --import tsx --conditions=agent-trust-source test/support/authority-service-worker.ts
 */
import { Authority, createKeyManager } from 'agent-trust'
import { createAuthorityService, RevocationFeed, type AuthorityService } from 'agent-trust/authority-service'
import { CertificateAuthority } from 'agent-trust/identity'
import { RedisKeyStore } from 'agent-trust/keys/redis'
import { createRedisStore } from 'agent-trust/revocation/redis'
import { MANIFEST } from './identity.js'

type Msg =
  | { id: number; op: 'init'; url: string; prefix: string; ca: { certificatePem: string; privateKeyPem: string } }
  | { id: number; op: 'close' }

let service: AuthorityService | undefined

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      if (m.op === 'init') {
        const store = createRedisStore({ url: m.url, prefix: `${m.prefix}-rev` })
        const keys = (await createKeyManager({ store: new RedisKeyStore({ url: m.url, prefix: `${m.prefix}-keys` }) })).keys
        const authority = await Authority.create({ manifest: MANIFEST, store: new RevocationFeed(store), keys })
        const ca = await CertificateAuthority.load(m.ca)
        service = await createAuthorityService({ authority, ca, operators: ['alice'] })
        process.send?.({ id: m.id, ok: true, value: { url: await service.listen() } })
        return
      }
      await service?.close()
      await service?.authority.store.close()
      process.send?.({ id: m.id, ok: true, value: null })
    } catch (e) {
      process.send?.({ id: m.id, ok: false, code: (e as { code?: string }).code ?? String(e) })
    }
  })()
})
