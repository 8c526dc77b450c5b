/** The connection pool of an {@link MtlsClientTransport} (an undici `Agent`). */
export interface MtlsDispatcher {
  /** Finish the requests in flight, then close the connections. */
  close(): Promise<void>
  /** Close the connections now, failing the requests in flight. */
  destroy(): Promise<void>
}

/**
 * Client side of MCP over mutual TLS: the SDK's `StreamableHTTPClientTransport` whose
 * `fetch` goes through an undici `Agent` that presents this agent's certificate and accepts
 * only the expected server's SPIFFE ID (not a host name: agent certificates carry none).
 *
 * `undici` and `agent-trust/identity` (with `@peculiar/x509`) are loaded when the helper is
 * called, so `agent-trust/mcp` itself needs neither.
 *
 * Subpath: `agent-trust/mcp`.
 */
import { X509Certificate } from 'node:crypto'
import type {
  StreamableHTTPClientTransport,
  StreamableHTTPClientTransportOptions,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js'
import type { StreamableHTTPClientTransport as StreamableHTTPClientTransportV2 } from '@modelcontextprotocol/client'
import type { CertificateRevocationChecker, TlsCredentials } from '#internal'
import type { WorkloadCertificate } from 'agent-trust/identity'
import { loadWithPeers, optionProblem, parseOptions, withMethods } from '#internal'
import { z } from 'zod'

export interface MtlsClientTransportOptions {
  /** This agent's certificate and key, and the CA bundle (e.g. `identity.credentials`). */
  readonly credentials: TlsCredentials
  /** The server's agent id: its certificate must be `spiffe://<domain>/agent/<serverId>`. */
  readonly serverId: string
  /** Default: the CA certificate's trust domain. */
  readonly trustDomain?: string
  /** Revoked certificates and identities, checked against the server's certificate at each handshake. */
  readonly revocations?: CertificateRevocationChecker
  /** TCP + TLS connect timeout, ms. Default 10000. */
  readonly connectTimeoutMs?: number
  /** Further options for the SDK transport (`requestInit`, `sessionId`, `reconnectionOptions`, ...); `fetch` is ours. */
  readonly transportOptions?: Omit<StreamableHTTPClientTransportOptions, 'fetch'>
  /**
   * The SDK major of the client that will use the transport: `1` (default) builds
   * `@modelcontextprotocol/sdk`'s `StreamableHTTPClientTransport`, `2` the one of
   * `@modelcontextprotocol/client`.
   */
  readonly sdkMajor?: 1 | 2
}

export interface MtlsClientTransport {
  /** Give it to `client.connect()` (an SDK 2.x transport with `sdkMajor: 2`). */
  readonly transport: StreamableHTTPClientTransport | StreamableHTTPClientTransportV2
  /** This agent's id, read from its certificate's SPIFFE ID: `withCapabilities`' `agentId`. */
  readonly agentId: string
  /** RFC 8705 `x5t#S256` of the certificate: `withCapabilities`' `certificateThumbprint`. */
  readonly certificateThumbprint: string
  /**
   * The undici `Agent` under the transport's `fetch`, typed by what it offers here so that the
   * declarations of `agent-trust/mcp` need no undici installed.
   */
  readonly dispatcher: MtlsDispatcher
  /** Close the dispatcher's connections (after `client.close()`). */
  close(): Promise<void>
}

const pem = z.string().refine((v) => v.includes('-----BEGIN'), 'expected PEM')

/** `createMtlsClientTransport(url, options)`, checked before anything is loaded or connected. */
const MtlsTransportArgs = z.strictObject({
  url: z.union([z.instanceof(URL), z.string()], { error: 'expected a URL or string' }).transform((v, ctx) => {
    try {
      const u = new URL(v)
      if (u.protocol === 'https:') return u
    } catch {
      // reported below
    }
    ctx.addIssue({ code: 'custom', message: 'expected an https URL' })
    return z.NEVER
  }),
  options: z.strictObject({
    // Credentials may be an identity's own object; the private key is never echoed.
    credentials: z.looseObject({ cert: pem, key: pem, ca: pem }),
    serverId: z.string().min(1),
    trustDomain: z.string().min(1).optional(),
    revocations: withMethods('isRevoked').optional(),
    connectTimeoutMs: z.int().min(1).optional(),
    // Passed to the SDK transport as given, except a fetch of its own (it would bypass mutual TLS).
    transportOptions: z
      .looseObject({})
      .refine((t) => t.fetch === undefined, { path: ['fetch'], message: 'would bypass mutual TLS and is not accepted' })
      .optional(),
    sdkMajor: z.union([z.literal(1), z.literal(2)]).optional(),
  }),
})

/**
 * Build a Streamable HTTP client transport over mutual TLS. Pair it with
 * `withCapabilities(client, { agentId: t.agentId, certificateThumbprint: t.certificateThumbprint, ... })`
 * so every token is bound to the certificate this connection presents (a remote authority
 * client binds to it by itself, and refuses a thumbprint that is not the caller's).
 *
 * The credentials are fixed for the transport's life: after a renewal, reconnect with a new
 * transport (tokens bound to the new certificate fail on a connection made with the old one).
 *
 * @example
 * ```ts
 * const t = await createMtlsClientTransport(url, { credentials: identity.credentials, serverId: 'agent-database-reader' })
 * const client = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
 *   issuer, agentId: t.agentId, serverId: 'agent-database-reader', context, certificateThumbprint: t.certificateThumbprint,
 * })
 * await client.connect(t.transport)
 * ```
 */
export async function createMtlsClientTransport(url: string | URL, options: MtlsClientTransportOptions): Promise<MtlsClientTransport> {
  const { url: endpoint } = parseOptions('createMtlsClientTransport', MtlsTransportArgs, { url, options })
  const { credentials, serverId, revocations, connectTimeoutMs = 10_000, transportOptions = {} } = options
  const sdkMajor = options.sdkMajor ?? 1
  const [{ Agent, fetch: undiciFetch }, identity, Transport] = await Promise.all([
    loadWithPeers('createMtlsClientTransport (agent-trust/mcp)', ['undici'], () => import('undici')),
    import('agent-trust/identity'),
    sdkMajor === 2
      ? import('@modelcontextprotocol/client').then((m) => m.StreamableHTTPClientTransport)
      : import('@modelcontextprotocol/sdk/client/streamableHttp.js').then((m) => m.StreamableHTTPClientTransport),
  ])
  const trustDomain = options.trustDomain ?? identity.trustDomainOf(credentials.ca)
  const certPath = ['options', 'credentials', 'cert']
  let own: WorkloadCertificate
  try {
    // Our own certificate must be an agent SVID of the domain, or no server would accept it.
    own = identity.inspectWorkloadCertificate(new X509Certificate(credentials.cert).raw, trustDomain, 'client')
  } catch (cause) {
    throw optionProblem('createMtlsClientTransport', certPath, `expected an agent certificate of trust domain "${trustDomain}"`, cause)
  }
  if (own.workload.kind !== 'agent') throw optionProblem('createMtlsClientTransport', certPath, 'expected an agent certificate')
  const connect = identity.mtlsClientOptions(credentials, { trustDomain, server: { kind: 'agent', id: serverId }, revocations })
  const dispatcher = new Agent({ connect: { ...connect, timeout: connectTimeoutMs } })
  // undici's fetch, not the global one: the global fetch is Node's bundled undici, which may
  // not accept a dispatcher from the installed undici package.
  const mtlsFetch = ((input: string | URL, init?: RequestInit) =>
    undiciFetch(input, { ...(init as object), dispatcher })) as unknown as FetchLike
  // Both majors take the same `(url, { fetch, requestInit, ... })`.
  const transport = new Transport(endpoint, { ...(transportOptions as object), fetch: mtlsFetch })
  return {
    transport,
    agentId: own.workload.id,
    certificateThumbprint: own.thumbprint,
    dispatcher,
    close: () => dispatcher.close(),
  }
}
