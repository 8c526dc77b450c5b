/**
 * `agent-trust/identity` in one process: a CA, an agent's HTTPS endpoint that requires
 * mutual TLS, a client, and a certificate-bound token that only its own agent can use.
 *
 * Prerequisites: `npm install`.
 * Run: `npx tsx --conditions=agent-trust-source examples/identity-mtls.ts`
 */
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { Agent } from 'undici'
import { Authority } from 'agent-trust'
import {
  CertificateAuthority,
  createPeerIdentity,
  guardTlsServer,
  mtlsClientOptions,
  mtlsServerOptions,
  type TlsCredentials,
} from 'agent-trust/identity'
import { CONTEXT, SEED_MANIFEST } from './seed-manifest.js'

const authority = await Authority.create({ manifest: SEED_MANIFEST })
const trustDomain = authority.manifest.trustDomain
const ca = await CertificateAuthority.create({ trustDomain })
// In production each agent generates its key and sends a CSR (see identity-scenario.ts);
// `issueLocal` does both here, in the process that holds the CA.
const reader = await ca.issueLocal({ kind: 'agent', id: 'agent-database-reader' })
const orchestrator = await ca.issueLocal({ kind: 'agent', id: 'moltbot-orchestrator' })
const verifier = authority.createVerifier({ id: 'agent-database-reader', mode: 'enforce' })
const peer = createPeerIdentity({ trustDomain })

const server = createServer(mtlsServerOptions(reader), (req, res) => {
  const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '')
  verifier.verify(token, { scope: 'db:read:documents:namespace:user-123', operation: 'read', peer: peer(req) }).then(
    (cap) => res.writeHead(200).end(`allowed for ${cap.presenter}`),
    (e: { code: string }) => res.writeHead(403).end(`denied ${e.code}`),
  )
})
guardTlsServer(server, { trustDomain }) // refuses non-SVID or revoked peers before any request
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`

async function call(who: string, creds: TlsCredentials, token: string): Promise<void> {
  const dispatcher = new Agent({
    connect: mtlsClientOptions(creds, { trustDomain, server: { kind: 'agent', id: 'agent-database-reader' } }),
  })
  const res = await dispatcher.request({ origin: url, path: '/', method: 'GET', headers: { authorization: `Bearer ${token}` } })
  console.log(`${who}: ${await res.body.text()}`)
  await dispatcher.close()
}

// The token carries cnf["x5t#S256"]: the orchestrator's certificate thumbprint.
const mint = () =>
  authority.mint({
    subject: 'moltbot-orchestrator',
    audience: 'agent-database-reader',
    scope: ['db:read:documents:namespace:user-123'],
    operation: 'read',
    context: CONTEXT,
    certificateThumbprint: orchestrator.issued.thumbprint,
  })
await call('orchestrator with its own token', orchestrator, await mint())
// The same agent id with another key (a thief who copied the token, not the key): denied.
const thief = await ca.issueLocal({ kind: 'agent', id: 'moltbot-orchestrator' })
await call('same id, another certificate', thief, await mint())
server.close()
