/**
 * Key rotation under load: rotate every second for 30 seconds while calls run continuously.
 * Zero false rejections, for an in-process verifier (JWKS by identity) and for a remote
 * verifier reading the JWKS over loopback HTTP with a cache (it learns each key only from
 * its background refresh: its unknown-kid cooldown is longer than the test, so this
 * exercises pre-publication). Then a token signed by a removed key is rejected.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Authority, createKeyManager, createVerifier, FileKeyStore, jwksNodeHandler, remoteJwks, type KeyManager } from 'agent-trust'
import { CONTEXT, MANIFEST, READ_SCOPE } from '../support/kernel.js'

const DURATION_MS = 30_000
const read = { scope: READ_SCOPE, operation: 'read' as const }
const kidOf = (t: string): string => (JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid

describe('rotation every second for 30 seconds under continuous calls', () => {
  const dir = mkdtempSync(join(tmpdir(), 'at-rotation-'))
  let server: Server | undefined
  let manager: KeyManager | undefined
  afterAll(async () => {
    manager?.stop()
    if (server !== undefined) await new Promise<void>((r) => server!.close(() => r()))
    rmSync(dir, { recursive: true, force: true })
  })

  it(
    'zero false rejections; a token signed by a removed key is rejected ERR_TOKEN_KEY_UNKNOWN',
    async () => {
      const path = join(dir, 'keys.json')
      manager = await createKeyManager({ store: new FileKeyStore(path), rotationIntervalMs: 1000, prepublishMs: 600, checkIntervalMs: 50 })
      const authority = await Authority.create({ manifest: MANIFEST, keys: manager.keys })

      const jwks = jwksNodeHandler(manager.keys, { maxAgeSeconds: 0 })
      server = createServer((req, res) => jwks(req, res))
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`

      const local = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'enforce' })
      // Each verifier has its own in-memory store, so one token can be presented to both.
      const remote = createVerifier({
        id: 'agent-database-reader',
        issuers: [{ issuer: authority.id, jwks: remoteJwks(url, { cacheMaxAgeMs: 150, cooldownMs: 3_600_000 }) }],
        mode: 'enforce',
      })
      await remote.verify(
        await authority.mint({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          scope: [READ_SCOPE],
          operation: 'read',
          context: CONTEXT,
        }),
        read,
      )

      manager.start()
      const failures: string[] = []
      const kids = new Set<string>()
      let calls = 0
      const end = Date.now() + DURATION_MS
      const loop = async (): Promise<void> => {
        while (Date.now() < end) {
          const token = await authority.mint({
            subject: 'agent-summarizer-v2',
            audience: 'agent-database-reader',
            scope: [READ_SCOPE],
            operation: 'read',
            context: CONTEXT,
          })
          kids.add(kidOf(token))
          for (const [name, v] of [
            ['local', local],
            ['remote', remote],
          ] as const) {
            try {
              await v.verify(token, read)
            } catch (e) {
              failures.push(`${name}: ${(e as { code?: string }).code}`)
            }
          }
          calls++
          await new Promise((r) => setImmediate(r))
        }
      }
      await Promise.all([loop(), loop(), loop(), loop()])
      manager.stop()

      expect(failures).toEqual([])
      expect(calls).toBeGreaterThan(500)
      expect(kids.size).toBeGreaterThanOrEqual(25) // it really rotated about every second
      expect(statSync(path).mode & 0o777).toBe(0o600) // persisted through every rotation

      // A removed (compromised) key: a token it signed is rejected.
      const signedByRemoved = await authority.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
      const spare = await authority.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      })
      expect(await manager.revoke(kidOf(signedByRemoved))).toBe(true)
      await expect(local.verify(signedByRemoved, read)).rejects.toMatchObject({ code: 'ERR_TOKEN_KEY_UNKNOWN' })
      // The remote verifier drops it once its cache (150 ms) refreshes.
      const deadline = Date.now() + 5000
      let code = ''
      while (Date.now() < deadline) {
        code = await remote.verify(spare, read).then(
          () => 'ok',
          (e: { code: string }) => e.code,
        )
        if (code === 'ERR_TOKEN_KEY_UNKNOWN') break
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(code).toBe('ERR_TOKEN_KEY_UNKNOWN')
      // And a restarted authority never loads it again.
      const reloaded = await new FileKeyStore(path).load()
      expect(reloaded.map((r) => r.kid)).not.toContain(kidOf(signedByRemoved))
    },
    DURATION_MS + 30_000,
  )
})
