/**
 * An authority in its own process, driven over IPC by the lineage tests: a real
 * `Authority.create` over the Redis store and a Redis key store shared with its siblings.
 * Run with: node --import tsx --conditions=agent-trust-source test/support/authority-worker.ts
 */
import { Authority, createKeyManager } from 'agent-trust'
import { RedisKeyStore } from 'agent-trust/keys/redis'
import { createRedisStore } from 'agent-trust/revocation/redis'
import { MANIFEST } from './kernel.js'

type Msg =
  | {
      id: number
      op: 'init'
      url: string
      prefix: string
      clockSkewMs?: number
      nodes?: Array<{ host: string; port: number }>
      shards?: number
      commandTimeoutMs?: number
      maxChildrenPerParent?: number
    }
  | { id: number; op: 'call'; method: string; args: unknown[] }

let authority: Authority | undefined

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      if (m.op === 'init') {
        // An injected clock: this whole process (every `Date.now()`) runs ahead or behind.
        if (m.clockSkewMs !== undefined) {
          const real = Date.now.bind(Date)
          Date.now = () => real() + (m.clockSkewMs as number)
        }
        // A Cluster when nodes are given (the store and the key store both on it), else the URL.
        const where = m.nodes === undefined ? { url: m.url } : { nodes: m.nodes }
        const timeout = m.commandTimeoutMs === undefined ? {} : { commandTimeoutMs: m.commandTimeoutMs }
        const store = createRedisStore({
          ...where,
          ...timeout,
          prefix: `${m.prefix}-rev`,
          ...(m.shards === undefined ? {} : { shards: m.shards }),
        })
        const keys = (await createKeyManager({ store: new RedisKeyStore({ ...where, ...timeout, prefix: `${m.prefix}-keys` }) })).keys
        authority = await Authority.create({
          manifest: MANIFEST,
          store,
          keys,
          ...(m.maxChildrenPerParent === undefined ? {} : { maxChildrenPerParent: m.maxChildrenPerParent }),
        })
        process.send?.({ id: m.id, ok: true, value: { jwks: authority.jwks(), issuer: authority.id } })
        return
      }
      const fn = (authority as unknown as Record<string, (...a: unknown[]) => unknown>)[m.method]!
      const value = await fn.apply(authority, m.args)
      process.send?.({ id: m.id, ok: true, value: value ?? null })
    } catch (e) {
      process.send?.({ id: m.id, ok: false, code: (e as { code?: string }).code ?? String(e) })
    }
  })()
})
