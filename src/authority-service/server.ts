/**
 * The authority as a service: an HTTPS server whose callers are
 * authenticated by mutual TLS and identified *only* by their certificate.
 *
 * Two listeners:
 * - the API (`listen`): TLS 1.3, client certificate required and checked during the
 *   handshake (chain, dates), then against the SVID rules and the revocation list before any
 *   HTTP byte is read; every request re-checks expiry and revocation;
 * - enrollment (`listenEnrollment`, optional): server-authenticated TLS only, for agents
 *   that have no certificate yet (a single-use join token + a CSR) and for the JWKS.
 *
 * Tokens minted through the API are bound to the caller's certificate (`cnf.x5t#S256`), so
 * a token stolen from one agent is useless on any other agent's connection.
 */
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { z } from 'zod'
import { sha256b64url } from '../lib/hash.js'
import type { AuditAction, AuditEventInput, AuditLog } from '../audit/types.js'
import { discardAudit } from '../audit/types.js'
import type { Authority } from '../authority/index.js'
import { AgentRevoked, AgentUnknown, ConfigInvalid, PeerForbidden, PeerUnauthenticated, RequestInvalid, TokenBinding } from '../errors.js'
import {
  CERTIFICATE_BACKDATE_SECONDS,
  MAX_CERTIFICATE_TTL_SECONDS,
  type CertificateAuthority,
  type TlsCredentials,
} from '../identity/ca.js'
import { guardTlsServer, workloadFromSocket, type PeerValidationOptions, type WorkloadCertificate } from '../identity/peer.js'
import { isSpiffeRepresentable, type Workload, type WorkloadKind } from '../identity/spiffe.js'
import { mtlsServerOptions, tlsServerOptions } from '../identity/tls.js'
import { toAgentTrustError } from '../verifier/index.js'
import { denialAnswer } from '../http/denial.js'
import { RevocationFeed } from './feed.js'
import {
  cleanDetails,
  DecideBody,
  EnrollBody,
  EnrollmentTokenBody,
  ExchangeBody,
  MintBody,
  MintForToolBody,
  PATHS,
  RenewBody,
  RevokeAgentBody,
  RevokeCertificateBody,
  RevokeTokenBody,
  SpawnBody,
  TrustChangeBody,
} from './wire.js'

export interface AuthorityServiceOptions {
  /** The authority; create it with `store: new RevocationFeed(innerStore)` so revocations reach the feed. */
  readonly authority: Authority
  /** The CA of the trust domain (shared by every replica: `CertificateAuthority.load`). */
  readonly ca: CertificateAuthority
  /** The service's own server certificate (an `authority` workload). Default: issued from `ca` at creation. */
  readonly credentials?: TlsCredentials
  /**
   * Operator ids allowed on operator endpoints (revocation, trust decisions, enrollment
   * tokens). Operators hold `spiffe://<domain>/operator/<id>` certificates, which no agent
   * can obtain. Default: every operator certificate of the CA.
   */
  readonly operators?: readonly string[]
  /** Bind every minted or exchanged token to the caller's certificate. Default true. */
  readonly bindTokens?: boolean
  /** Lifetime of issued agent certificates, seconds. Default: the CA's (24 h). */
  readonly certificateTtlSeconds?: number
  /** Lifetime of enrollment (join) tokens, seconds. Default 600. */
  readonly enrollmentTokenTtlSeconds?: number
  /** Largest accepted request body, bytes. Default 65536. */
  readonly maxBodyBytes?: number
  /** Where the service records its own decisions (the authority records mint/exchange/...). */
  readonly audit?: AuditLog
}

type Caller = WorkloadCertificate
type Access = 'public' | 'agent' | 'operator' | 'any'

interface Route {
  readonly access: Access
  /** What the audit log calls a denial of this endpoint. */
  readonly action: AuditAction
  readonly run: (caller: Caller | undefined, body: unknown, url: URL) => Promise<unknown>
}

const ENROLLMENT_PATHS = new Set<string>([PATHS.enroll, PATHS.jwks, PATHS.wellKnownJwks, PATHS.wellKnownMetadata])

/** A Host header fit to name this service in its metadata document; anything else is not echoed. */
const HOST_HEADER = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$/

/**
 * The RFC 8414 document: where the keys and endpoints are. `issuer` is the URL the client
 * reached (RFC 8414 asks for an https URL); `agent_trust_issuer` is the `iss` of the tokens
 * this authority signs. Clients authenticate with their certificate (RFC 8705
 * `tls_client_auth`), and tokens are bound to it.
 */
function authorizationServerMetadata(authorityId: string, origin: string): Record<string, unknown> {
  return {
    issuer: origin,
    agent_trust_issuer: authorityId,
    jwks_uri: `${origin}${PATHS.wellKnownJwks}`,
    token_endpoint: `${origin}${PATHS.mint}`,
    revocation_endpoint: `${origin}${PATHS.revokeToken}`,
    grant_types_supported: ['urn:ietf:params:oauth:grant-type:token-exchange'],
    token_endpoint_auth_methods_supported: ['tls_client_auth'],
    tls_client_certificate_bound_access_tokens: true,
    token_endpoint_auth_signing_alg_values_supported: ['ES256'],
    response_types_supported: [],
  }
}

/** Errors already in the audit log (the Authority's own mint/exchange/spawn denials, certificate refusals): not recorded twice. */
const alreadyRecorded = new WeakSet<object>()

async function kernel<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (e) {
    if (typeof e === 'object' && e !== null) alreadyRecorded.add(e)
    throw e
  }
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const r = schema.safeParse(body, { reportInput: false })
  if (!r.success) {
    const where = r.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
      .join('; ')
    throw new RequestInvalid(`invalid request body: ${where}`, { details: { rule: 'body' } })
  }
  return r.data
}

/**
 * @example
 * ```ts
 * const feed = new RevocationFeed()
 * const authority = await Authority.create({ manifest, store: feed })
 * const ca = await CertificateAuthority.create({ trustDomain: authority.manifest.trustDomain })
 * const service = await AuthorityService.create({ authority, ca, operators: ['alice'] })
 * const url = await service.listen({ port: 8443 })
 * ```
 */
export class AuthorityService {
  readonly authority: Authority
  readonly ca: CertificateAuthority
  readonly feed: RevocationFeed
  readonly credentials: TlsCredentials
  readonly trustDomain: string
  readonly #operators: ReadonlySet<string> | undefined
  readonly #bind: boolean
  readonly #certTtl: number | undefined
  readonly #joinTtl: number
  readonly #maxBody: number
  readonly #audit: AuditLog
  readonly #joinTokens = new Map<string, { agentId: string; expiresAtMs: number }>()
  readonly #servers: Server[] = []
  readonly #routes: ReadonlyMap<string, Route>
  /** One options object for every peer check, so per-connection results are reused. */
  readonly #validation: PeerValidationOptions

  private constructor(options: AuthorityServiceOptions, feed: RevocationFeed, credentials: TlsCredentials) {
    this.authority = options.authority
    this.ca = options.ca
    this.feed = feed
    this.credentials = credentials
    this.trustDomain = options.ca.trustDomain
    this.#operators = options.operators === undefined ? undefined : new Set(options.operators)
    this.#bind = options.bindTokens ?? true
    this.#certTtl = options.certificateTtlSeconds
    this.#joinTtl = options.enrollmentTokenTtlSeconds ?? 600
    this.#maxBody = options.maxBodyBytes ?? 64 * 1024
    this.#audit = options.audit ?? discardAudit
    this.#routes = this.#buildRoutes()
    this.#validation = Object.freeze({
      trustDomain: this.trustDomain,
      ca: credentials.ca,
      revocations: feed.certificates,
      kinds: ['agent', 'operator'] as const,
    })
  }

  static async create(options: AuthorityServiceOptions): Promise<AuthorityService> {
    const { authority, ca } = options ?? ({} as AuthorityServiceOptions)
    if (authority === undefined || ca === undefined) throw new ConfigInvalid('the authority service needs an authority and a CA')
    if (!(authority.store instanceof RevocationFeed)) {
      throw new ConfigInvalid(
        'create the Authority with `store: new RevocationFeed(store)` so that revocations reach the feed verifiers read',
      )
    }
    if (authority.manifest.trustDomain !== ca.trustDomain) throw new ConfigInvalid('the CA and the manifest name different trust domains')
    for (const o of options.operators ?? [])
      if (!isSpiffeRepresentable(o)) throw new ConfigInvalid('operator ids must be SPIFFE-representable')
    const ttl = options.enrollmentTokenTtlSeconds ?? 600
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > 86_400)
      throw new ConfigInvalid('enrollmentTokenTtlSeconds must be an integer from 60 to 86400')
    const credentials = options.credentials ?? (await ca.issueLocal({ kind: 'authority', id: authority.id }))
    return new AuthorityService(options, authority.store, credentials)
  }

  /** Start the mutual-TLS API. Resolves with its URL (`https://host:port`). */
  listen(options: { port?: number; host?: string } = {}): Promise<string> {
    const server = createServer({ ...mtlsServerOptions(this.credentials) }, (req, res) => void this.#handle(req, res, 'api'))
    guardTlsServer(server, {
      ...this.#validation,
      onRefused: (e) =>
        this.#record({
          action: 'agent_call',
          decision: 'deny',
          code: e.code,
          destination: this.authority.id,
          note: `connection refused: ${String(e.details.rule ?? '')}`,
        }),
    })
    return this.#start(server, options)
  }

  /** Start the enrollment listener (no client certificate): enrollment and JWKS only. */
  listenEnrollment(options: { port?: number; host?: string } = {}): Promise<string> {
    const server = createServer({ ...tlsServerOptions(this.credentials) }, (req, res) => void this.#handle(req, res, 'enrollment'))
    return this.#start(server, options)
  }

  /**
   * A single-use join token for `agentId`'s first certificate (give it to the agent out of
   * band, with the CA bundle). Only its hash is kept.
   */
  createEnrollmentToken(agentId: string, options: { ttlSeconds?: number } = {}): string {
    const a = this.authority.agent(agentId)
    if (a === undefined)
      throw new AgentUnknown(`agent "${String(agentId).slice(0, 64)}" is not in the manifest`, {
        details: { agentId: String(agentId).slice(0, 64) },
      })
    if (a.revoked) throw new AgentRevoked(`agent "${agentId}" is revoked`, { details: { agentId } })
    if (!isSpiffeRepresentable(agentId)) throw new ConfigInvalid('this agent id cannot hold a certificate (SPIFFE path characters only)')
    const ttl = options.ttlSeconds ?? this.#joinTtl
    const token = randomBytes(32).toString('base64url')
    const now = Date.now()
    for (const [k, v] of this.#joinTokens) if (v.expiresAtMs <= now) this.#joinTokens.delete(k)
    this.#joinTokens.set(sha256b64url(token), { agentId, expiresAtMs: now + ttl * 1000 })
    return token
  }

  /**
   * Quarantine an agent and its descendants: their tokens die (feed + store), their
   * certificates are refused at the next request, and every replica sharing the store refuses them.
   */
  async revokeAgent(agentId: string, options: { by?: string } = {}): Promise<string[]> {
    const ids = await this.authority.revokeAgent(agentId, options)
    const now = Date.now()
    for (const id of ids) {
      await this.feed.quarantine(id)
      if (isSpiffeRepresentable(id)) this.feed.revokeIdentity(this.ca.spiffeIdOf({ kind: 'agent', id }), now)
    }
    return ids
  }

  /** Revoke one certificate by serial (a leaked key) without revoking the agent. */
  revokeCertificate(serialNumber: string, options: { by?: string } = {}): void {
    const forgetAtMs = Date.now() + (MAX_CERTIFICATE_TTL_SECONDS + CERTIFICATE_BACKDATE_SECONDS) * 1000
    this.feed.revokeCertificate(serialNumber, forgetAtMs)
    this.#record({
      action: 'revoke',
      decision: 'allow',
      origin: options.by,
      note: `certificate ${serialNumber.toLowerCase().slice(0, 40)}`,
    })
  }

  /** Stop listening and drop every connection. */
  async close(): Promise<void> {
    await Promise.all(
      this.#servers.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve())
            s.closeAllConnections()
          }),
      ),
    )
  }

  // ---- plumbing ------------------------------------------------------------------------

  #start(server: Server, options: { port?: number; host?: string }): Promise<string> {
    const { port = 0, host = '127.0.0.1' } = options
    server.keepAliveTimeout = 30_000
    server.headersTimeout = 10_000
    server.requestTimeout = 30_000
    // Handshake failures (no certificate, another CA, expired) are normal denials, not crashes.
    server.on('tlsClientError', (err: Error & { code?: string }) => {
      this.#record({
        action: 'agent_call',
        decision: 'deny',
        code: 'ERR_PEER_UNAUTHENTICATED',
        destination: this.authority.id,
        note: `handshake refused: ${String(err.code ?? 'tls').slice(0, 64)}`,
      })
    })
    this.#servers.push(server)
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        const a = server.address() as AddressInfo
        const h = a.family === 'IPv6' ? `[${a.address}]` : a.address
        resolve(`https://${h}:${a.port}`)
      })
    })
  }

  async #handle(req: IncomingMessage, res: ServerResponse, listener: 'api' | 'enrollment'): Promise<void> {
    let route: Route | undefined
    let caller: Caller | undefined
    try {
      const host = req.headers.host
      const url = new URL(req.url ?? '/', `https://${typeof host === 'string' && HOST_HEADER.test(host) ? host : 'authority.invalid'}`)
      const method = req.method ?? 'GET'
      route = this.#routes.get(`${method} ${url.pathname}`)
      if (route === undefined || (listener === 'enrollment' && !ENROLLMENT_PATHS.has(url.pathname))) {
        req.resume()
        throw new RequestInvalid('no such endpoint', { details: { rule: 'route' } })
      }
      if (listener === 'api') {
        // Identity comes from the certificate alone, re-checked (expiry, revocation) per request.
        caller = workloadFromSocket(req.socket as TLSSocket, this.#validation)
        this.#authorize(route.access, caller)
      } else if (route.access !== 'public') {
        throw new RequestInvalid('no such endpoint', { details: { rule: 'route' } })
      }
      const body = method === 'GET' ? undefined : await this.#readJson(req)
      const result = await route.run(caller, body, url)
      this.#send(res, 200, JSON.stringify(result ?? null))
    } catch (e) {
      const err = toAgentTrustError(e)
      if (!alreadyRecorded.has(err)) {
        this.#record({
          action: route?.action ?? 'agent_call',
          decision: 'deny',
          code: err.code,
          origin: caller?.workload.id,
          destination: this.authority.id,
          note: `service: ${String(err.details.rule ?? err.name).slice(0, 64)}`,
        })
      }
      if (!res.headersSent) {
        // ERR_GENERIC keeps its cause here: what leaves the process stays generic.
        const message = err.code === 'ERR_GENERIC' ? 'the authority could not complete the request; it was denied' : err.message
        const answer = denialAnswer(err, {
          realm: this.authority.id,
          body: JSON.stringify({ error: { code: err.code, message, details: cleanDetails(err.details) } }),
        })
        // Two transport refusals keep their own statuses (RFC 9110 15.5.14, 15.5.5).
        const status = err.details.rule === 'size' ? 413 : err.details.rule === 'route' ? 404 : answer.status
        this.#send(res, status, answer.body, answer.headers)
      }
    }
  }

  #authorize(access: Access, caller: Caller): void {
    const kind: WorkloadKind = caller.workload.kind
    if (access === 'any' || access === 'public') return
    if (access === 'agent' && kind !== 'agent')
      throw new PeerForbidden('only agents may call this endpoint', { details: { rule: 'agent-only', kind } })
    if (access === 'operator') {
      if (kind !== 'operator')
        throw new PeerForbidden('only operators may call this endpoint', { details: { rule: 'operator-only', kind } })
      if (this.#operators !== undefined && !this.#operators.has(caller.workload.id))
        throw new PeerForbidden("this operator is not in the service's operators list", { details: { rule: 'operator-only' } })
    }
  }

  async #readJson(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > this.#maxBody) {
        // Answer 413 and close the connection (the rest of the body is never read).
        throw new RequestInvalid(`the request body exceeds ${this.#maxBody} bytes`, { details: { rule: 'size' } })
      }
      chunks.push(chunk as Buffer)
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      throw new RequestInvalid('the request body is not JSON', { details: { rule: 'json' } })
    }
  }

  #send(res: ServerResponse, status: number, json: string, headers: Readonly<Record<string, string>> = {}): void {
    res.writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      ...headers,
      'content-length': Buffer.byteLength(json),
      ...(status === 413 ? { connection: 'close' } : {}),
    })
    res.end(json)
  }

  #record(e: AuditEventInput): void {
    this.#audit.record(e)
  }

  /** Fail closed for an agent another replica quarantined, even if this one never heard of it. */
  async #assertActive(agentId: string): Promise<void> {
    if (await this.feed.isQuarantined(agentId)) throw new AgentRevoked(`agent "${agentId}" is revoked`, { details: { agentId } })
  }

  #onBehalf(named: string | undefined, caller: Caller): string {
    const self = caller.workload.id
    if (named !== undefined && named !== self) {
      throw new PeerForbidden('a caller may only act as itself: the request names another agent', {
        details: { rule: 'on-behalf', agentId: self },
      })
    }
    return self
  }

  #binding(asked: string | undefined, caller: Caller): string | undefined {
    if (asked !== undefined && asked !== caller.thumbprint)
      throw new TokenBinding("tokens can only be bound to the caller's own certificate", { details: { agentId: caller.workload.id } })
    return this.#bind ? caller.thumbprint : undefined
  }

  async #issueFor(
    workload: Workload,
    csr: string,
  ): Promise<{ certificatePem: string; caPem: string; notAfter: string; serialNumber: string }> {
    try {
      const issued = await this.ca.issue({ csr, workload, ttlSeconds: this.#certTtl })
      this.#record({
        action: 'key',
        decision: 'allow',
        origin: workload.id,
        destination: this.authority.id,
        note: `certificate issued to ${workload.kind} (serial ${issued.serialNumber})`,
      })
      return {
        certificatePem: issued.certificatePem,
        caPem: issued.caPem,
        notAfter: issued.notAfter.toISOString(),
        serialNumber: issued.serialNumber,
      }
    } catch (e) {
      const err = toAgentTrustError(e)
      this.#record({
        action: 'key',
        decision: 'deny',
        code: err.code,
        origin: workload.id,
        destination: this.authority.id,
        note: 'certificate request refused',
      })
      alreadyRecorded.add(err)
      throw err
    }
  }

  #activeAgent(agentId: string): void {
    const a = this.authority.agent(agentId)
    if (a === undefined) throw new AgentUnknown(`agent "${agentId}" is not in the manifest`, { details: { agentId } })
    if (a.revoked) throw new AgentRevoked(`agent "${agentId}" is revoked`, { details: { agentId } })
  }

  #buildRoutes(): ReadonlyMap<string, Route> {
    const a = this.authority
    const must = (c: Caller | undefined): Caller => {
      if (c === undefined) throw new RequestInvalid('no such endpoint', { details: { rule: 'route' } })
      return c
    }
    const routes: Array<[string, Route]> = [
      ['GET ' + PATHS.jwks, { access: 'public', action: 'key', run: async () => a.jwks() }],
      ['GET ' + PATHS.wellKnownJwks, { access: 'public', action: 'key', run: async () => a.jwks() }],
      [
        'GET ' + PATHS.wellKnownMetadata,
        { access: 'public', action: 'key', run: async (_c, _b, url) => authorizationServerMetadata(a.id, url.origin) },
      ],
      [
        'POST ' + PATHS.enroll,
        {
          access: 'public',
          action: 'key',
          run: async (_c, body) => {
            const b = parse(EnrollBody, body)
            const key = sha256b64url(b.token)
            const entry = this.#joinTokens.get(key)
            // Single use, whatever happens next: a token is burnt by its first presentation.
            this.#joinTokens.delete(key)
            if (entry === undefined || entry.expiresAtMs <= Date.now()) {
              throw new PeerUnauthenticated('the enrollment token is unknown, used or expired', { details: { rule: 'enrollment-token' } })
            }
            this.#activeAgent(entry.agentId)
            await this.#assertActive(entry.agentId)
            return this.#issueFor({ kind: 'agent', id: entry.agentId }, b.csr)
          },
        },
      ],
      [
        'POST ' + PATHS.renew,
        {
          access: 'any',
          action: 'key',
          run: async (c, body) => {
            const caller = must(c)
            const b = parse(RenewBody, body)
            if (caller.workload.kind === 'agent') {
              this.#activeAgent(caller.workload.id)
              await this.#assertActive(caller.workload.id)
            }
            return this.#issueFor(caller.workload, b.csr)
          },
        },
      ],
      [
        'POST ' + PATHS.mint,
        {
          access: 'agent',
          action: 'mint',
          run: async (c, body) => {
            const caller = must(c)
            const b = parse(MintBody, body)
            const subject = this.#onBehalf(b.subject, caller)
            const certificateThumbprint = this.#binding(b.certificateThumbprint, caller)
            await this.#assertActive(subject)
            return { token: await kernel(() => a.mint({ ...b, subject, certificateThumbprint })) }
          },
        },
      ],
      [
        'POST ' + PATHS.mintForTool,
        {
          access: 'agent',
          action: 'mint',
          run: async (c, body) => {
            const caller = must(c)
            const b = parse(MintForToolBody, body)
            const subject = this.#onBehalf(b.subject, caller)
            const certificateThumbprint = this.#binding(b.certificateThumbprint, caller)
            await this.#assertActive(subject)
            return kernel(() => a.mintForTool({ ...b, subject, certificateThumbprint }))
          },
        },
      ],
      [
        'POST ' + PATHS.exchange,
        {
          access: 'agent',
          action: 'exchange',
          run: async (c, body) => {
            const caller = must(c)
            const b = parse(ExchangeBody, body)
            const holder = this.#onBehalf(b.holder, caller)
            const certificateThumbprint = this.#binding(b.certificateThumbprint, caller)
            await this.#assertActive(holder)
            const peer = { agentId: holder, certificateThumbprint: caller.thumbprint }
            return { token: await kernel(() => a.exchange({ ...b, holder, certificateThumbprint, peer })) }
          },
        },
      ],
      [
        'POST ' + PATHS.spawn,
        {
          access: 'agent',
          action: 'spawn',
          run: async (c, body) => {
            const caller = must(c)
            const b = parse(SpawnBody, body)
            const parent = this.#onBehalf(b.parent, caller)
            await this.#assertActive(parent)
            return kernel(() => a.spawn({ parent, child: b.child as Parameters<Authority['spawn']>[0]['child'] }))
          },
        },
      ],
      [
        'POST ' + PATHS.revokeAgent,
        {
          access: 'operator',
          action: 'revoke',
          run: async (c, body) => ({ revoked: await this.revokeAgent(parse(RevokeAgentBody, body).agentId, { by: must(c).spiffeId }) }),
        },
      ],
      [
        'POST ' + PATHS.revokeToken,
        {
          access: 'operator',
          action: 'revoke',
          run: async (c, body) => {
            await a.revokeToken(parse(RevokeTokenBody, body).jti, { by: must(c).spiffeId })
            return { revoked: true }
          },
        },
      ],
      [
        'POST ' + PATHS.revokeCertificate,
        {
          access: 'operator',
          action: 'revoke',
          run: async (c, body) => {
            this.revokeCertificate(parse(RevokeCertificateBody, body).serialNumber, { by: must(c).spiffeId })
            return { revoked: true }
          },
        },
      ],
      [
        'GET ' + PATHS.revocations,
        {
          access: 'any',
          action: 'revoke',
          run: async (_c, _b, url) => {
            const since = Number(url.searchParams.get('since') ?? '0')
            if (!Number.isSafeInteger(since) || since < 0)
              throw new RequestInvalid('since must be a non-negative integer', { details: { rule: 'query' } })
            return this.feed.read(since, url.searchParams.get('epoch') ?? undefined, a.id, a.jwks())
          },
        },
      ],
      [
        'POST ' + PATHS.trustChanges,
        {
          access: 'any',
          action: 'trust_change',
          run: async (c, body) => {
            const b = parse(TrustChangeBody, body)
            return a.requestTrustChange({ ...b, requestedBy: must(c).spiffeId })
          },
        },
      ],
      [
        'GET ' + PATHS.trustChanges,
        {
          access: 'operator',
          action: 'trust_change',
          run: async (_c, _b, url) => {
            const status = url.searchParams.get('status') ?? undefined
            if (status !== undefined && status !== 'pending' && status !== 'approved' && status !== 'denied')
              throw new RequestInvalid('status must be pending, approved or denied', { details: { rule: 'query' } })
            return a.listTrustChanges(status)
          },
        },
      ],
      [
        'POST ' + PATHS.decideTrustChange,
        {
          access: 'operator',
          action: 'trust_change',
          run: async (c, body) => {
            const b = parse(DecideBody, body)
            return a.decideTrustChange(b.id, { approved: b.approved, approver: must(c).spiffeId, note: b.note })
          },
        },
      ],
      [
        'POST ' + PATHS.enrollmentTokens,
        {
          access: 'operator',
          action: 'key',
          run: async (c, body) => {
            const b = parse(EnrollmentTokenBody, body)
            const token = this.createEnrollmentToken(b.agentId, { ttlSeconds: b.ttlSeconds })
            this.#record({
              action: 'key',
              decision: 'allow',
              origin: must(c).spiffeId,
              destination: b.agentId,
              note: 'enrollment token created',
            })
            return { token }
          },
        },
      ],
    ]
    return new Map(routes)
  }
}

/** Create the service (see {@link AuthorityService}). */
export function createAuthorityService(options: AuthorityServiceOptions): Promise<AuthorityService> {
  return AuthorityService.create(options)
}
