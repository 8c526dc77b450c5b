/** Loopback servers, a scripted resolver and a self-signed certificate for the egress tests. */
import { webcrypto } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import * as x509 from '@peculiar/x509'
import type { Resolver } from 'agent-trust/egress'

export interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: IncomingMessage['headers']
  readonly body: string
}

export interface TestServer {
  readonly port: number
  readonly seen: Seen[]
  /** TCP connections accepted so far (a refused hop opens none). */
  readonly connections: number
  close(): Promise<void>
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body?: string) => void

function track(server: Server, handler: Handler, seen: Seen[]): void {
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      handler(req, res, body)
    })
  })
}

async function listen(server: Server, seen: Seen[]): Promise<TestServer> {
  let connections = 0
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    seen,
    get connections() {
      return connections
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.()
        server.close(() => resolve())
      }),
  }
}

/** A plain HTTP server on 127.0.0.1 with a random port. */
export async function startServer(handler: Handler = (_q, s) => s.end('ok')): Promise<TestServer> {
  const seen: Seen[] = []
  const server = createServer()
  track(server, handler, seen)
  return listen(server, seen)
}

/** An HTTPS server on 127.0.0.1 with the given certificate. */
export async function startHttpsServer(cert: TestCert, handler: Handler): Promise<TestServer> {
  const seen: Seen[] = []
  const server = createHttpsServer({ key: cert.key, cert: cert.cert })
  track(server as unknown as Server, handler, seen)
  return listen(server as unknown as Server, seen)
}

/** A redirect answer. */
export function redirectTo(location: string, status = 302): Handler {
  return (_req, res) => {
    res.writeHead(status, { location })
    res.end()
  }
}

/**
 * Plays DNS: names map to fixed answers; anything else is NXDOMAIN. Counts lookups so a test
 * can show that the connector, not the OS, resolved the name.
 */
export function scriptedResolver(answers: Record<string, readonly string[]>): Resolver & { calls: string[] } {
  const calls: string[] = []
  const fn = async (hostname: string) => {
    calls.push(hostname)
    const a = answers[hostname.toLowerCase().replace(/\.$/, '')]
    if (a === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
    return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
  return Object.assign(fn, { calls })
}

export interface TestCert {
  readonly cert: string
  readonly key: string
}

/** A self-signed P-256 certificate for the given DNS names (its own trust anchor). */
export async function selfSignedCert(names: readonly string[]): Promise<TestCert> {
  x509.cryptoProvider.set(webcrypto as never)
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${names[0]}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: alg,
    keys: keys as never,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value }))),
    ],
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`
  return { cert: cert.toString('pem'), key }
}

/**
 * The coded error a refused request rejects with: `request()` rejects with it, `fetch` wraps it
 * in `TypeError('fetch failed')` as `cause`. Throws when the request did not fail.
 */
export async function refusal(p: Promise<unknown>): Promise<{ code?: string; details?: Record<string, unknown> }> {
  try {
    await p
  } catch (e) {
    let err = e as { code?: string; cause?: unknown }
    while (err.code === undefined && err.cause !== undefined) err = err.cause as typeof err
    return err as { code?: string; details?: Record<string, unknown> }
  }
  throw new Error('expected a refusal')
}
