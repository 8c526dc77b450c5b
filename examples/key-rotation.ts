/**
 * Rotating signing keys with a file store, a JWKS endpoint, and a verifier that trusts the
 * JWKS URL (another process or machine in real life).
 * Prerequisites: `npm install`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Authority, createKeyManager, createVerifier, FileKeyStore, jwksNodeHandler, remoteJwks } from 'agent-trust'

const dir = mkdtempSync(join(tmpdir(), 'agent-trust-keys-'))
// Keys persist in a 0600 file, replaced atomically; a new key every 24 h, published before
// it signs (5 minutes by default; 1 s here so the example is quick); retired keys stay
// published for 330 s so that no token they signed is falsely rejected.
const manager = await createKeyManager({ store: new FileKeyStore(join(dir, 'keys.json')), prepublishMs: 1000 })
manager.start()

const authority = await Authority.create({
  manifest: {
    agents: [
      { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
      { id: 'agent-database-reader', trustLevel: 'L2' },
    ],
  },
  keys: manager.keys,
})

// The authority serves its public keys; Cache-Control max-age 60 s, ETag.
const jwks = jwksNodeHandler(manager.keys)
const server = createServer((req, res) => (req.url === '/.well-known/jwks.json' ? jwks(req, res) : res.writeHead(404).end()))
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`

// The verifier trusts the URL: cached (60 s by default; 300 ms here), refreshed in the
// background, and once on an unknown kid outside the cooldown.
const verifier = createVerifier({
  id: 'agent-database-reader',
  issuers: [{ issuer: authority.id, jwks: remoteJwks(url, { cacheMaxAgeMs: 300, cooldownMs: 300 }) }],
  mode: 'enforce',
})
const scope = 'db:read:documents:namespace:user-123'
const mint = () =>
  authority.mint({
    subject: 'agent-summarizer-v2',
    audience: 'agent-database-reader',
    scope: [scope],
    operation: 'read',
    context: { session_id: 's', user_id: 'user-123', task_id: 't' },
  })
const attempt = async (label: string, token: string) => {
  try {
    await verifier.verify(token, { scope, operation: 'read' })
    console.log(`allowed  ${label}`)
  } catch (e) {
    console.log(`denied   ${label}  ${(e as { code: string }).code}`)
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
await attempt('token signed by the current key', await mint())
const first = manager.keys.active().kid
const signedByFirst = await mint()
await manager.rotateNow() // the next key is published now and signs in 1 s
await sleep(1100)
await attempt(`token signed by the new key (${manager.keys.active().kid !== first ? 'rotated' : 'not rotated'})`, await mint())
await manager.revoke(first) // compromise: gone from the JWKS at once
await sleep(700) // remote verifiers drop it when their cache refreshes
await attempt('token signed by the revoked key', signedByFirst)

manager.stop()
server.close()
rmSync(dir, { recursive: true, force: true })
