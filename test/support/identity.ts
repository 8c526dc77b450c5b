/** Shared set-up for identity and authority-service tests: a CA, agents, loopback mTLS servers. */
import { createHash, webcrypto } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import * as x509 from '@peculiar/x509'
import { Agent } from 'undici'
import type { ManifestInput } from 'agent-trust'
import {
  CertificateAuthority,
  guardTlsServer,
  mtlsServerOptions,
  type PeerValidationOptions,
  type TlsCredentials,
} from 'agent-trust/identity'
import { CONTEXT, READ_DOCUMENTS } from './seed.js'

export { CONTEXT }

export const TRUST_DOMAIN = 'agent-trust.test'
export const READ_SCOPE = 'db:read:documents:namespace:user-123'
export const READ = { scope: READ_SCOPE, operation: 'read' as const }

export const MANIFEST: ManifestInput = {
  trustDomain: TRUST_DOMAIN,
  agents: [
    {
      id: 'agent-orchestrator',
      trustLevel: 'L3',
      grants: ['db:read:documents:namespace:*', 'tool:agent-database-reader:*'],
      maxDelegationDepth: 2,
    },
    { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'], maxDelegationDepth: 1 },
    {
      id: 'agent-database-reader',
      trustLevel: 'L2',
      tools: [READ_DOCUMENTS],
    },
  ],
}

const crypto = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1]
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }

/** Sign an arbitrary leaf with the CA's key: for certificates our CA would never issue (bad SANs, CA leaves...). */
export async function craftCertificate(
  ca: CertificateAuthority,
  options: {
    names?: Array<{ type: 'url' | 'dns'; value: string }>
    sanExtensions?: number
    isCa?: boolean
    keyUsage?: number
    eku?: string[]
    notBefore?: Date
    notAfter?: Date
    signer?: { key: webcrypto.CryptoKey; issuer: string }
  } = {},
): Promise<TlsCredentials & { der: Uint8Array }> {
  const exported = await ca.export()
  const caKey = await webcrypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(exported.privateKeyPem),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  )
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair
  const names = options.names ?? [{ type: 'url', value: `spiffe://${TRUST_DOMAIN}/agent/agent-summarizer-v2` }]
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(options.isCa ?? false, undefined, true),
    new x509.KeyUsagesExtension(options.keyUsage ?? x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(options.eku ?? [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth]),
  ]
  for (let i = 0; i < (options.sanExtensions ?? 1); i++) extensions.push(new x509.SubjectAlternativeNameExtension(names))
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: '7f' + createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 30),
      subject: 'CN=crafted',
      issuer: options.signer?.issuer ?? ca.certificate.subject,
      notBefore: options.notBefore ?? new Date(Date.now() - 60_000),
      notAfter: options.notAfter ?? new Date(Date.now() + 3600_000),
      publicKey: keys.publicKey,
      signingKey: (options.signer?.key ?? caKey) as never,
      signingAlgorithm: EC,
      extensions,
    },
    crypto,
  )
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as never), 'PRIVATE KEY')
  return { cert: cert.toString('pem'), key, ca: ca.certificatePem, der: new Uint8Array(cert.rawData) }
}

export async function makeCa(): Promise<CertificateAuthority> {
  return CertificateAuthority.create({ trustDomain: TRUST_DOMAIN })
}

export async function agentCredentials(ca: CertificateAuthority, id: string, options: { ttlSeconds?: number; nowMs?: number } = {}) {
  return ca.issueLocal({ kind: 'agent', id }, options)
}

export interface TestServer {
  readonly url: string
  readonly server: Server
  readonly handled: () => number
  close(): Promise<void>
}

/** An mTLS HTTPS server on loopback, guarded; counts the requests its handler saw. */
export async function startMtlsServer(
  credentials: TlsCredentials,
  handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>,
  guard?: PeerValidationOptions,
): Promise<TestServer> {
  let handled = 0
  const server = createServer(mtlsServerOptions(credentials), (req, res) => {
    handled++
    void Promise.resolve()
      .then(() => handler(req, res))
      .catch((e: unknown) => {
        if (!res.headersSent) {
          const code = (e as { code?: string }).code ?? 'ERR_GENERIC'
          res.writeHead(code === 'ERR_PEER_UNAUTHENTICATED' ? 401 : 403, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error: { code, rule: (e as { details?: { rule?: string } }).details?.rule } }))
        }
      })
  })
  server.on('tlsClientError', () => undefined)
  if (guard !== undefined) guardTlsServer(server, guard)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `https://127.0.0.1:${port}`,
    server,
    handled: () => handled,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

/** One request through an undici Agent with the given `connect` options; resolves status and JSON body. */
export async function request(
  url: string,
  connect: object,
  options: { path?: string; method?: string; body?: unknown; headers?: Record<string, string>; dispatcher?: Agent } = {},
): Promise<{ status: number; body: any }> {
  const dispatcher = options.dispatcher ?? new Agent({ connect })
  try {
    const res = await dispatcher.request({
      origin: url,
      path: options.path ?? '/',
      method: (options.method ?? 'GET') as 'GET',
      headers: { 'content-type': 'application/json', ...options.headers },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(5000),
    })
    const text = await res.body.text()
    return { status: res.statusCode, body: text.length > 0 ? JSON.parse(text) : undefined }
  } finally {
    if (options.dispatcher === undefined) await dispatcher.close()
  }
}
