/**
 * The client of the authority service: implements the kernel's `CapabilityIssuer`, so the
 * MCP client wrapper, the LangChain adapter and the agent-to-agent client use a remote
 * authority exactly as they use an in-process one. One undici `Agent` with mutual TLS and
 * keep-alive; denials come back as the same coded errors (`errorFromCode`).
 */
import { Agent, buildConnector } from 'undici'
import { z } from 'zod'
import { fn, parseOptions } from '../lib/options.js'
import { isTrustDomain } from '../identity/spiffe.js'
import type { AgentDeclaration } from '../config/manifest.js'
import { AuthorityUnavailable, errorFromCode, RequestInvalid } from '../errors.js'
import type {
  CapabilityIssuer,
  ExchangeRequest,
  MintRequest,
  RetireRequest,
  SpawnRequest,
  ToolMintRequest,
  TrustChangeRequest,
  TrustChangeStatus,
} from '../authority/types.js'
import { trustDomainOf, type TlsCredentials } from '../identity/ca.js'
import { mtlsClientOptions } from '../identity/tls.js'
import type { JSONWebKeySet } from '../keys/index.js'
import type { Operation, TrustLevel } from '../policy/trust.js'
import type { TrustedIssuer } from '../verifier/index.js'
import type { FeedPage } from './feed.js'
import type { FeedSource } from './feed-store.js'
import { cleanDetails, PATHS } from './wire.js'

export interface AuthorityClientOptions {
  /** The service URL, or several replicas: tried in order when one does not answer. */
  readonly url: string | readonly string[]
  /**
   * This agent's (or operator's) certificate, key and the CA bundle. A function is read at
   * every new connection, so a renewed certificate (`AgentIdentity`) is picked up.
   */
  readonly tls: TlsCredentials | (() => TlsCredentials)
  /** Trust domain; default: read from the CA certificate's `spiffe://<domain>` SAN. */
  readonly trustDomain?: string
  /** The authority's id: its server certificate must be `spiffe://<domain>/authority/<id>`. Default `agent-trust-authority`. */
  readonly authorityId?: string
  /** Per-request timeout in ms (connect included). Default 5000. */
  readonly timeoutMs?: number
  /** Keep-alive connections per replica. Default 16. */
  readonly connections?: number
}

type Connector = buildConnector.connector

function connectorFor(
  tls: TlsCredentials | (() => TlsCredentials),
  trustDomain: string,
  authorityId: string,
  timeoutMs: number,
): Connector {
  let cached: { creds: TlsCredentials; connector: Connector } | undefined
  return function mtlsConnect(opts, cb) {
    const creds = typeof tls === 'function' ? tls() : tls
    if (cached?.creds !== creds) {
      const options = mtlsClientOptions(creds, { trustDomain, server: { kind: 'authority', id: authorityId } })
      cached = { creds, connector: buildConnector({ ...options, timeout: timeoutMs }) }
    }
    cached.connector(opts, cb)
  }
}

function normaliseUrls(url: string | readonly string[]): string[] {
  return (typeof url === 'string' ? [url] : [...url]).map((u) => new URL(u).origin)
}

/** Only https: the client presents its certificate and checks the authority's. */
const authorityUrl = z.string().refine((u) => URL.canParse(u) && new URL(u).protocol === 'https:', 'expected an https URL')

/** {@link AuthorityClientOptions}, checked once when the client is built. */
const AuthorityClientOptionsSchema = z.strictObject({
  url: z.union([authorityUrl, z.array(authorityUrl).min(1, 'expected at least one authority URL').readonly()], {
    error: 'expected an https URL or a list of them',
  }),
  // The PEM itself is checked per connection (mtlsClientOptions), since a function may renew it.
  tls: z.union([fn<() => TlsCredentials>(), z.looseObject({ cert: z.string().optional(), key: z.string().optional(), ca: z.string() })], {
    error: 'expected { cert, key, ca } in PEM or a function returning them',
  }),
  trustDomain: z.string().refine(isTrustDomain, 'expected a SPIFFE trust domain').optional(),
  authorityId: z.string().min(1).optional(),
  timeoutMs: z.int().min(1).max(600_000).optional(),
  connections: z.int().min(1).max(1024).optional(),
})

/** The options of {@link enroll}, checked before anything is sent. The join token is never echoed. */
const EnrollOptionsSchema = z.strictObject({
  url: authorityUrl,
  ca: z.string().refine((v) => v.includes('-----BEGIN CERTIFICATE-----'), 'expected the CA bundle (PEM)'),
  // The service decides on the token and the CSR (ERR_CSR_DENIED); here only their type.
  token: z.string().min(1),
  csr: z.string().min(1),
  trustDomain: z.string().refine(isTrustDomain, 'expected a SPIFFE trust domain').optional(),
  authorityId: z.string().min(1).optional(),
  timeoutMs: z.int().min(1).max(600_000).optional(),
})

async function callJson<T>(
  dispatcher: Agent,
  origins: readonly string[],
  start: number,
  method: 'GET' | 'POST',
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<{ value: T; index: number }> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  let lastError: unknown
  for (let i = 0; i < origins.length; i++) {
    const index = (start + i) % origins.length
    let status: number
    let text: string
    try {
      const res = await dispatcher.request({
        origin: origins[index] as string,
        path,
        method,
        headers: payload === undefined ? {} : { 'content-type': 'application/json' },
        body: payload,
        signal: AbortSignal.timeout(timeoutMs),
      })
      status = res.statusCode
      text = await res.body.text()
    } catch (e) {
      // No answer from this replica: try the next. (A refused certificate also ends here:
      // the service closes the connection before reading a byte.)
      lastError = e
      continue
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new AuthorityUnavailable(`the authority answered HTTP ${status} without JSON`)
    }
    if (status === 200) return { value: json as T, index }
    const err = (json as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error
    if (typeof err?.code === 'string') {
      throw errorFromCode(err.code, typeof err.message === 'string' ? err.message.slice(0, 500) : undefined, cleanDetails(err.details))
    }
    throw new AuthorityUnavailable(`the authority answered HTTP ${status}`)
  }
  throw new AuthorityUnavailable("no authority replica answered (check the service, this agent's certificate and the CA bundle)", {
    cause: lastError,
  })
}

/**
 * @example
 * ```ts
 * const authority = createAuthorityClient({ url: 'https://authority.internal:8443', tls: identity.credentials })
 * const { token } = await authority.mintForTool({ subject: 'agent-summarizer-v2', audience: 'agent-database-reader',
 *   tool: 'read_documents', args: { namespace: 'user-123' }, context })
 * ```
 */
export class AuthorityClient implements CapabilityIssuer, FeedSource {
  readonly authorityId: string
  readonly trustDomain: string
  readonly timeoutMs: number
  readonly #origins: readonly string[]
  readonly #dispatcher: Agent
  #current = 0

  constructor(options: AuthorityClientOptions) {
    parseOptions('AuthorityClient', AuthorityClientOptionsSchema, options)
    const { timeoutMs = 5000, authorityId = 'agent-trust-authority', connections = 16 } = options
    this.#origins = normaliseUrls(options.url)
    const initial = typeof options.tls === 'function' ? options.tls() : options.tls
    this.trustDomain = options.trustDomain ?? trustDomainOf(initial.ca)
    this.authorityId = authorityId
    this.timeoutMs = timeoutMs
    this.#dispatcher = new Agent({
      connect: connectorFor(options.tls, this.trustDomain, authorityId, timeoutMs),
      connections,
      keepAliveTimeout: 20_000,
      keepAliveMaxTimeout: 25_000,
    })
  }

  async #call<T>(method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const { value, index } = await callJson<T>(this.#dispatcher, this.#origins, this.#current, method, path, body, timeoutMs)
    this.#current = index // stay on the replica that answered
    return value
  }

  // ---- CapabilityIssuer ----------------------------------------------------------------

  /** Mint for this agent (the service takes the subject from the certificate and binds the token to it). */
  async mint(request: MintRequest): Promise<string> {
    const r = await this.#call<{ token?: unknown }>('POST', PATHS.mint, strip(request))
    return tokenOf(r)
  }

  async mintForTool(request: ToolMintRequest): Promise<{ token: string; scope: string; operation: Operation }> {
    const r = await this.#call<{ token?: unknown; scope?: unknown; operation?: unknown }>('POST', PATHS.mintForTool, strip(request))
    if (typeof r?.scope !== 'string' || (r.operation !== 'read' && r.operation !== 'write' && r.operation !== 'execute'))
      throw new AuthorityUnavailable('the authority answered with an unexpected body')
    return { token: tokenOf(r), scope: r.scope, operation: r.operation }
  }

  async exchange(request: ExchangeRequest): Promise<string> {
    // `peer` is the service's business: it authenticates the holder itself.
    const { peer: _peer, ...rest } = request
    return tokenOf(await this.#call<{ token?: unknown }>('POST', PATHS.exchange, strip(rest)))
  }

  async spawn(request: SpawnRequest): Promise<AgentDeclaration> {
    return this.#call<AgentDeclaration>('POST', PATHS.spawn, request)
  }

  /** Retire a child of the caller (or of one of its descendants) whose task is done; returns the ids retired. */
  async retire(request: RetireRequest): Promise<string[]> {
    const r = await this.#call<{ retired?: unknown }>('POST', PATHS.retire, request)
    if (!Array.isArray(r?.retired) || !r.retired.every((x) => typeof x === 'string'))
      throw new AuthorityUnavailable('the authority answered with an unexpected body')
    return r.retired as string[]
  }

  // ---- certificates ----------------------------------------------------------------------

  /** A new certificate for this caller's own identity (send a CSR from a fresh key). */
  renewCertificate(csr: string): Promise<{ certificatePem: string; caPem: string; notAfter: string; serialNumber: string }> {
    return this.#call('POST', PATHS.renew, { csr })
  }

  // ---- operators ---------------------------------------------------------------------------

  async revokeAgent(agentId: string): Promise<string[]> {
    return (await this.#call<{ revoked: string[] }>('POST', PATHS.revokeAgent, { agentId })).revoked
  }

  async revokeToken(jti: string): Promise<void> {
    await this.#call('POST', PATHS.revokeToken, { jti })
  }

  async revokeCertificate(serialNumber: string): Promise<void> {
    await this.#call('POST', PATHS.revokeCertificate, { serialNumber })
  }

  /** Every certificate of `kind`/`id` issued until now (a leaked key; the workload enrolls again). */
  async revokeIdentity(workload: { kind: 'agent' | 'operator'; id: string }): Promise<void> {
    await this.#call('POST', PATHS.revokeIdentity, { kind: workload.kind, id: workload.id })
  }

  async createEnrollmentToken(agentId: string, options: { ttlSeconds?: number } = {}): Promise<string> {
    return (await this.#call<{ token: string }>('POST', PATHS.enrollmentTokens, { agentId, ...options })).token
  }

  requestTrustChange(request: { agentId: string; level: TrustLevel; reason: string }): Promise<TrustChangeRequest> {
    return this.#call('POST', PATHS.trustChanges, request)
  }

  listTrustChanges(status?: TrustChangeStatus): Promise<TrustChangeRequest[]> {
    return this.#call('GET', status === undefined ? PATHS.trustChanges : `${PATHS.trustChanges}?status=${encodeURIComponent(status)}`)
  }

  decideTrustChange(id: string, decision: { approved: boolean; note?: string }): Promise<TrustChangeRequest> {
    return this.#call('POST', PATHS.decideTrustChange, { id, ...decision })
  }

  // ---- keys and revocations --------------------------------------------------------------

  jwks(): Promise<JSONWebKeySet> {
    return this.#call('GET', PATHS.jwks)
  }

  /** One page of the revocation feed (see `RevocationFeedStore`). */
  revocations(
    since: number,
    epoch: string | undefined,
    options: { timeoutMs?: number; certificates?: string; limit?: number } = {},
  ): Promise<FeedPage> {
    const q = new URLSearchParams({ since: String(since) })
    if (epoch !== undefined) q.set('epoch', epoch)
    if (options.certificates !== undefined && options.certificates !== '') q.set('certificates', options.certificates)
    if (options.limit !== undefined) q.set('limit', String(options.limit))
    return this.#call('GET', `${PATHS.revocations}?${q}`, undefined, Math.min(options.timeoutMs ?? this.timeoutMs, this.timeoutMs))
  }

  /**
   * A trusted issuer whose JWKS is fetched from the service and refreshed in the background
   * every `refreshMs` (default 60 s). For verifiers that use Redis instead of the feed (the
   * feed store carries keys itself).
   */
  trustedIssuer(options: { refreshMs?: number } = {}): TrustedIssuer {
    const { refreshMs = 60_000 } = options
    let current: JSONWebKeySet | undefined
    let json = ''
    let fetchedAt = Number.NEGATIVE_INFINITY
    let pending: Promise<void> | undefined
    const refresh = (): Promise<void> =>
      (pending ??= this.jwks()
        .then((j) => {
          const s = JSON.stringify(j)
          if (s !== json) {
            current = Object.freeze(JSON.parse(s)) as JSONWebKeySet
            json = s
          }
          fetchedAt = performance.now()
        })
        .finally(() => {
          pending = undefined
        }))
    return {
      issuer: this.authorityId,
      jwks: () => {
        if (current === undefined) return refresh().then(() => current as JSONWebKeySet)
        if (performance.now() - fetchedAt > refreshMs) refresh().catch(() => undefined)
        return current
      },
    }
  }

  /** Close the keep-alive connections. */
  close(): Promise<void> {
    return this.#dispatcher.close()
  }
}

export function createAuthorityClient(options: AuthorityClientOptions): AuthorityClient {
  return new AuthorityClient(options)
}

/**
 * First certificate: present a join token and a CSR to the enrollment listener over
 * server-authenticated TLS (the agent has no certificate yet). Nothing secret travels but
 * the single-use token.
 */
export async function enroll(options: {
  url: string
  /** The CA bundle, distributed out of band with the join token. */
  ca: string
  token: string
  csr: string
  trustDomain?: string
  authorityId?: string
  timeoutMs?: number
}): Promise<{ certificatePem: string; caPem: string; notAfter: string; serialNumber: string }> {
  parseOptions('enroll', EnrollOptionsSchema, options)
  const { timeoutMs = 5000, authorityId = 'agent-trust-authority' } = options
  const trustDomain = options.trustDomain ?? trustDomainOf(options.ca)
  const dispatcher = new Agent({
    connect: {
      ...mtlsClientOptions({ ca: options.ca }, { trustDomain, server: { kind: 'authority', id: authorityId } }),
      timeout: timeoutMs,
    },
  })
  try {
    const { value } = await callJson<{ certificatePem: string; caPem: string; notAfter: string; serialNumber: string }>(
      dispatcher,
      normaliseUrls(options.url),
      0,
      'POST',
      PATHS.enroll,
      { token: options.token, csr: options.csr },
      timeoutMs,
    )
    return value
  } finally {
    await dispatcher.close()
  }
}

function tokenOf(r: { token?: unknown } | null | undefined): string {
  if (typeof r?.token !== 'string') throw new AuthorityUnavailable('the authority answered without a token')
  return r.token
}

/** Drop undefined members (JSON would anyway) and refuse non-object requests early. */
function strip<T extends object>(request: T): T {
  if (typeof request !== 'object' || request === null) throw new RequestInvalid('the request must be an object')
  return request
}
