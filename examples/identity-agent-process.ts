/**
 * Child process of the identity scenario: one agent (`database-reader`, `orchestrator` or
 * `summarizer`, from argv). It generates its own key, enrolls with a join token, and then
 * talks to the authority and to other agents over mutual TLS only.
 */
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { Agent } from 'undici'
import { createVerifier } from 'agent-trust'
import { createAuthorityClient, enroll, RevocationFeedStore } from 'agent-trust/authority-service'
import {
  AgentIdentity,
  createPeerIdentity,
  guardTlsServer,
  inspectWorkloadCertificate,
  mtlsClientOptions,
  mtlsServerOptions,
} from 'agent-trust/identity'
import { serve } from './identity-ipc.js'
import { CONTEXT, SUMMARIZER } from './seed-manifest.js'

const IDS: Record<string, string> = {
  'database-reader': 'agent-database-reader',
  orchestrator: 'moltbot-orchestrator',
  summarizer: 'agent-summarizer-v2',
}
const role = process.argv[2] ?? ''
const agentId = IDS[role]
if (agentId === undefined) throw new Error(`unknown role "${role}"`)

interface Init {
  url: string
  enrollUrl: string
  ca: string
  authorityId: string
  trustDomain: string
  joinToken: string
}

let identity: AgentIdentity
let authority: ReturnType<typeof createAuthorityClient>
let server: Server | undefined
let feed: RevocationFeedStore | undefined
let init: Init

/** The database reader's tool endpoint: the caller is its certificate; the token must be bound to it. */
async function startDatabaseReader(): Promise<string> {
  feed = await RevocationFeedStore.start({ source: authority, pollIntervalMs: 200, maxStalenessMs: 2000 })
  const verifier = createVerifier({ id: agentId!, issuers: [feed.trustedIssuer()], store: feed, mode: 'enforce' })
  const validation = { trustDomain: init.trustDomain, revocations: feed.certificates, ca: init.ca }
  const peer = createPeerIdentity(validation)
  server = createServer(mtlsServerOptions(identity.credentials), (req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    let raw = ''
    req.on('data', (d: Buffer) => (raw += d.toString()))
    req.on('end', () => {
      void (async () => {
        try {
          const { namespace } = JSON.parse(raw) as { namespace: string }
          const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '')
          await verifier.verify(token, {
            scope: `db:read:documents:namespace:${namespace}`,
            operation: 'read',
            tool: 'read_documents',
            args: { namespace },
            peer: peer(req),
          })
          reply(200, { documents: [`${namespace}/notes.txt`] })
        } catch (e) {
          reply(403, { error: { code: (e as { code?: string }).code ?? 'ERR_GENERIC' } })
        }
      })()
    })
  })
  guardTlsServer(server, validation)
  server.on('tlsClientError', () => undefined)
  identity.onChange((c) => server?.setSecureContext(mtlsServerOptions(c)))
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Call the database reader over mTLS, on a fresh connection, as this agent. */
async function readDocuments(target: string, namespace: string, token: string): Promise<void> {
  const connect = mtlsClientOptions(identity.credentials, {
    trustDomain: init.trustDomain,
    server: { kind: 'agent', id: 'agent-database-reader' },
  })
  const dispatcher = new Agent({ connect })
  try {
    let res
    try {
      res = await dispatcher.request({
        origin: target,
        path: '/tools/read_documents',
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ namespace }),
        signal: AbortSignal.timeout(5000),
      })
    } catch {
      // The peer closed the connection before reading anything: refused at the TLS layer.
      throw Object.assign(new Error('connection refused by the peer'), { code: 'ERR_PEER_UNAUTHENTICATED' })
    }
    const body = (await res.body.json()) as { error?: { code?: string } }
    if (res.statusCode !== 200) throw Object.assign(new Error('denied'), { code: body.error?.code ?? 'ERR_GENERIC' })
  } finally {
    await dispatcher.close()
  }
}

const mint = async (namespace: string) =>
  (
    await authority.mintForTool({
      subject: agentId,
      audience: 'agent-database-reader',
      tool: 'read_documents',
      args: { namespace },
      context: CONTEXT,
    })
  ).token

serve({
  async init(args: Init) {
    init = args
    identity = await AgentIdentity.obtain({
      trustDomain: init.trustDomain,
      workload: { kind: 'agent', id: agentId },
      // Key and CSR are made here; only the CSR and the single-use join token travel.
      obtain: (csr) => enroll({ url: init.enrollUrl, ca: init.ca, token: init.joinToken, csr, authorityId: init.authorityId }),
      renew: (csr) => authority.renewCertificate(csr),
    })
    authority = createAuthorityClient({ url: init.url, tls: () => identity.credentials, authorityId: init.authorityId })
    identity.startAutoRenew()
    const url = role === 'database-reader' ? await startDatabaseReader() : undefined
    return { spiffeId: identity.certificate.spiffeId, notAfter: new Date(identity.certificate.notAfterMs).toISOString(), url }
  },
  /** The orchestrator asks the authority to register the summarizer (it is the parent: its certificate says so). */
  spawn: async () => authority.spawn({ parent: agentId, child: SUMMARIZER }),
  /** Mint a token for this call and use it. */
  read: async ({ target, namespace }: { target: string; namespace: string }) => readDocuments(target, namespace, await mint(namespace)),
  /** Present a token this process did not mint (a stolen one). */
  present: async ({ target, namespace, token }: { target: string; namespace: string; token: string }) =>
    readDocuments(target, namespace, token),
  /** The summarizer "leaks" a fresh token (prompt injection, a log line, a compromised tool...). */
  leak: async ({ namespace }: { namespace: string }) => mint(namespace),
  mint: async ({ namespace }: { namespace: string }) => {
    await mint(namespace)
  },
  /** Database reader: wait until the feed has delivered the revocation of `spiffeId`'s certificates. */
  'await-revoked': async ({ certificate }: { certificate: string }) => {
    const der = new Uint8Array(Buffer.from(certificate.replace(/-----[^-]+-----|\s/g, ''), 'base64'))
    const c = inspectWorkloadCertificate(der, init.trustDomain)
    const t0 = performance.now()
    while (!feed!.certificates.isRevoked(c)) {
      if (performance.now() - t0 > feed!.maxStalenessMs * 2) throw Object.assign(new Error('not learned'), { code: 'ERR_GENERIC' })
      await new Promise((r) => setTimeout(r, 10))
    }
    return { afterMs: Math.round(performance.now() - t0), boundMs: feed!.maxStalenessMs }
  },
  certificate: async () => identity.credentials.cert,
})

process.on('SIGTERM', () => {
  void Promise.allSettled([authority?.close(), feed?.close(), new Promise<void>((r) => (server ? server.close(() => r()) : r()))]).finally(
    () => process.exit(0),
  )
})
process.send?.({ type: 'ready' })
