/**
 * A verifier in its own process, driven over IPC by test/revocation/redis-processes.test.ts:
 * a real `createVerifier` with the Redis store, trusting a static public JWKS.
 * Run with: node --import tsx --conditions=agent-trust-source test/revocation/verifier-worker.ts
 */
import { createVerifier, type JSONWebKeySet, type Verifier } from 'agent-trust'
import { createRedisStore, type RedisReplayRevocationStore } from 'agent-trust/revocation/redis'

type Msg =
  | {
      type: 'init'
      url?: string
      nodes?: Array<{ host: string; port: number }>
      prefix: string
      shards?: number
      issuer: string
      jwks: JSONWebKeySet
      audience: string
    }
  | { type: 'load'; tokens: string[] }
  | { type: 'go'; concurrency: number; scope: string }
  | { type: 'verify'; id: number; token: string; scope: string }
  | { type: 'close' }

let store: RedisReplayRevocationStore | undefined
let verifier: Verifier | undefined
let tokens: string[] = []

const send = (m: unknown): void => {
  process.send?.(m)
}

async function outcome(token: string, scope: string): Promise<string> {
  try {
    await verifier!.verify(token, { scope, operation: 'read' })
    return 'ok'
  } catch (e) {
    return (e as { code?: string }).code ?? 'THROWN'
  }
}

process.on('message', (m: Msg) => {
  void (async () => {
    if (m.type === 'init') {
      store = createRedisStore({
        ...(m.nodes === undefined ? { url: m.url } : { nodes: m.nodes }),
        prefix: m.prefix,
        shards: m.shards ?? 1,
        commandTimeoutMs: 10_000,
      })
      verifier = createVerifier({ id: m.audience, issuers: [{ issuer: m.issuer, jwks: m.jwks }], store, mode: 'enforce' })
      send({ type: 'ready', pid: process.pid })
    } else if (m.type === 'load') {
      tokens = m.tokens
      send({ type: 'loaded', count: tokens.length })
    } else if (m.type === 'go') {
      const results = new Array<string>(tokens.length)
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < tokens.length) {
          const i = next++
          results[i] = await outcome(tokens[i] as string, m.scope)
        }
      }
      await Promise.all(Array.from({ length: m.concurrency }, worker))
      send({ type: 'results', results })
    } else if (m.type === 'verify') {
      send({ type: 'verified', id: m.id, result: await outcome(m.token, m.scope) })
    } else if (m.type === 'close') {
      await store?.close()
      process.disconnect?.()
      process.exit(0)
    }
  })()
})

// Parent gone: do not linger.
process.on('disconnect', () => process.exit(0))
