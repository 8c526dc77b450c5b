/**
 * The authority as a service: an HTTPS server whose callers are
 * authenticated by mutual TLS and identified *only* by their certificate.
 *
 * Two listeners:
 * - the API (`listen`): TLS 1.3, client certificate required and checked during the
 *   handshake (chain, dates), then against the SVID rules before any HTTP byte is read;
 *   every request re-checks expiry and asks the certificate revocation store (one keyed
 *   lookup, no cache: with Redis, one HMGET per request, so a revocation made on any replica
 *   is refused by every replica from the next request on); a connection whose certificate
 *   is revoked is also dropped right after its handshake;
 * - enrollment (`listenEnrollment`, optional): server-authenticated TLS only, for agents
 *   that have no certificate yet (a single-use join token + a CSR) and for the JWKS.
 *
 * Tokens minted through the API are bound to the caller's certificate (`cnf.x5t#S256`), so
 * a token stolen from one agent is useless on any other agent's connection.
 */
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer, type Server } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { forEachBounded, STORE_WRITE_CONCURRENCY } from '../lib/bounded.js'
import { sha256b64url } from '../lib/hash.js'
import type { AuditEventInput, AuditLog } from '../audit/types.js'
import { discardAudit } from '../audit/types.js'
import type { Authority } from '../authority/index.js'
import type { AgentTrustError } from '../errors.js'
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
  buildRoutes,
  ENROLLMENT_PATHS,
  isAlreadyRecorded,
  markRecorded,
  type Access,
  type Caller,
  type IssuedCertificate,
  type Route,
} from './routes.js'
import { readJsonBody, requestUrl, sendJson, startListener } from './transport.js'
import { cleanDetails } from './wire.js'
import { allowedEvent, peerRefused, refusedEvent, revoked } from '../audit/events.js'

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
    this.#routes = buildRoutes({
      authority: this.authority,
      feed,
      actingAs: (named, caller) => this.#actingAs(named, caller),
      binding: (asked, caller) => this.#binding(asked, caller),
      assertActive: (agentId) => this.#assertActive(agentId),
      enroll: (token, csr) => this.#enroll(token, csr),
      renew: (caller, csr) => this.#renew(caller, csr),
      revokeAgent: (agentId, o) => this.revokeAgent(agentId, o),
      revokeCertificate: (serial, o) => this.revokeCertificate(serial, o),
      revokeIdentity: (workload, o) => this.revokeIdentity(workload, o),
      createEnrollmentToken: (agentId, o) => this.createEnrollmentToken(agentId, o),
      record: (e) => this.#record(e),
    })
    this.#validation = Object.freeze({
      trustDomain: this.trustDomain,
      ca: credentials.ca,
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
    const refused = (e: AgentTrustError): void =>
      this.#record(peerRefused('agent_call', e.code, { destination: this.authority.id, stage: 'connection', reason: e.details.rule }))
    guardTlsServer(server, { ...this.#validation, onRefused: refused })
    // The revocation store is asynchronous: a revoked peer's socket is dropped once it answers.
    // Every request waits for its own lookup anyway, so this only closes the connection early.
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.destroyed) return
      let c: WorkloadCertificate
      try {
        c = workloadFromSocket(socket, this.#validation)
      } catch {
        return
      }
      this.#assertNotRevoked(c).catch((e: unknown) => {
        socket.destroy()
        refused(toAgentTrustError(e))
      })
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
    // A lineage can hold thousands of agents: their markers and certificate revocations are
    // written a bounded number at a time, so the last descendant's certificate is refused
    // soon after the first's without crowding the store connection that verifiers share.
    await forEachBounded(ids, STORE_WRITE_CONCURRENCY, async (id) => {
      await this.feed.quarantine(id)
      if (isSpiffeRepresentable(id)) await this.feed.revokeIdentity(this.ca.spiffeIdOf({ kind: 'agent', id }), now)
    })
    return ids
  }

  /**
   * Revoke every certificate of an agent's or an operator's identity issued until now, without
   * quarantining the agent: the answer to a leaked key. A serial alone does not cover a
   * certificate that was renewed from it before the revocation (a thief who renewed first
   * holds another serial); this does. The workload enrolls again for a new certificate.
   */
  async revokeIdentity(workload: { kind: 'agent' | 'operator'; id: string }, options: { by?: string } = {}): Promise<void> {
    if (!isSpiffeRepresentable(workload.id))
      throw new RequestInvalid('the id cannot name a certificate identity (SPIFFE ID path segment)', { details: { rule: 'id' } })
    await this.feed.revokeIdentity(this.ca.spiffeIdOf(workload), Date.now())
    this.#record(revoked({ kind: 'identity', workload: workload.kind, id: workload.id }, options.by))
  }

  /** Revoke one certificate by serial (a lost certificate) without revoking the agent. */
  async revokeCertificate(serialNumber: string, options: { by?: string } = {}): Promise<void> {
    const forgetAtMs = Date.now() + (MAX_CERTIFICATE_TTL_SECONDS + CERTIFICATE_BACKDATE_SECONDS) * 1000
    await this.feed.revokeCertificate(serialNumber, forgetAtMs)
    this.#record(revoked({ kind: 'certificate', serialNumber }, options.by))
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
    // Handshake failures (no certificate, another CA, expired) are normal denials, not crashes.
    server.on('tlsClientError', (err: Error & { code?: string }) => {
      this.#record(
        peerRefused('agent_call', 'ERR_PEER_UNAUTHENTICATED', {
          destination: this.authority.id,
          stage: 'handshake',
          reason: String(err.code ?? 'tls'),
        }),
      )
    })
    this.#servers.push(server)
    return startListener(server, options)
  }

  async #handle(req: IncomingMessage, res: ServerResponse, listener: 'api' | 'enrollment'): Promise<void> {
    let route: Route | undefined
    let caller: Caller | undefined
    try {
      const url = requestUrl(req)
      const method = req.method ?? 'GET'
      route = this.#routes.get(`${method} ${url.pathname}`)
      if (route === undefined || (listener === 'enrollment' && !ENROLLMENT_PATHS.has(url.pathname))) {
        req.resume()
        throw new RequestInvalid('no such endpoint', { details: { rule: 'route' } })
      }
      if (listener === 'api') {
        // Identity comes from the certificate alone, re-checked (expiry, revocation) per request.
        caller = workloadFromSocket(req.socket as TLSSocket, this.#validation)
        await this.#assertNotRevoked(caller)
        this.#authorize(route.access, caller)
      } else if (route.access !== 'public') {
        throw new RequestInvalid('no such endpoint', { details: { rule: 'route' } })
      }
      const body = method === 'GET' ? undefined : await readJsonBody(req, this.#maxBody)
      const result = await route.run(caller, body, url)
      sendJson(res, 200, JSON.stringify(result ?? null))
    } catch (e) {
      const err = toAgentTrustError(e)
      if (!isAlreadyRecorded(err)) {
        this.#record(
          refusedEvent(route?.action ?? 'agent_call', err.code, {
            origin: caller?.workload.id,
            destination: this.authority.id,
            note: `service: ${String(err.details.rule ?? err.name).slice(0, 64)}`,
          }),
        )
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
        sendJson(res, status, answer.body, answer.headers)
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

  #record(e: AuditEventInput): void {
    this.#audit.record(e)
  }

  /**
   * The caller's certificate against the revocation store (serial and identity, one keyed
   * lookup). A store that cannot answer refuses too (`ERR_STORE_UNAVAILABLE`).
   */
  async #assertNotRevoked(c: WorkloadCertificate): Promise<void> {
    const status = await this.feed.certificates.status(c)
    if (status !== 'good') {
      throw new PeerUnauthenticated(
        status === 'serial-revoked'
          ? 'the peer certificate has been revoked; enroll again for a new certificate'
          : 'every certificate of this identity issued before its revocation has been revoked',
        { details: { rule: 'revoked' } },
      )
    }
  }

  /** Fail closed for an agent another replica quarantined, even if this one never heard of it. */
  async #assertActive(agentId: string): Promise<void> {
    if (await this.feed.isQuarantined(agentId)) throw new AgentRevoked(`agent "${agentId}" is revoked`, { details: { agentId } })
    // A quarantine of an ancestor made on another replica (or by the CLI) is in the shared
    // store only: no certificate for a descendant is issued or renewed after it.
    await this.authority.assertInForce(agentId)
  }

  #actingAs(named: string | undefined, caller: Caller): string {
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

  async #issueFor(workload: Workload, csr: string): Promise<IssuedCertificate> {
    // After an identity revocation (a leaked key), a certificate backdated as usual would fall
    // under it: one issued now starts after it instead.
    const now = Date.now()
    const probe = { serialNumber: '0', spiffeId: this.ca.spiffeIdOf(workload), notBeforeMs: now - CERTIFICATE_BACKDATE_SECONDS * 1000 }
    const revokedRecently = (await this.feed.certificates.status(probe, now)) === 'identity-revoked'
    try {
      const issued = await this.ca.issue({
        csr,
        workload,
        ttlSeconds: this.#certTtl,
        nowMs: now,
        ...(revokedRecently ? { identityRevokedAtMs: now } : {}),
      })
      this.#record(
        allowedEvent('key', {
          origin: workload.id,
          destination: this.authority.id,
          note: `certificate issued to ${workload.kind} (serial ${issued.serialNumber})`,
        }),
      )
      return {
        certificatePem: issued.certificatePem,
        caPem: issued.caPem,
        notAfter: issued.notAfter.toISOString(),
        serialNumber: issued.serialNumber,
      }
    } catch (e) {
      const err = toAgentTrustError(e)
      this.#record(
        refusedEvent('key', err.code, { origin: workload.id, destination: this.authority.id, note: 'certificate request refused' }),
      )
      markRecorded(err)
      throw err
    }
  }

  #activeAgent(agentId: string): void {
    const a = this.authority.agent(agentId)
    if (a === undefined) throw new AgentUnknown(`agent "${agentId}" is not in the manifest`, { details: { agentId } })
    if (a.revoked) throw new AgentRevoked(`agent "${agentId}" is revoked`, { details: { agentId } })
  }

  async #enroll(token: string, csr: string): Promise<IssuedCertificate> {
    const key = sha256b64url(token)
    const entry = this.#joinTokens.get(key)
    // Single use, whatever happens next: a token is burnt by its first presentation.
    this.#joinTokens.delete(key)
    if (entry === undefined || entry.expiresAtMs <= Date.now()) {
      throw new PeerUnauthenticated('the enrollment token is unknown, used or expired', { details: { rule: 'enrollment-token' } })
    }
    this.#activeAgent(entry.agentId)
    await this.#assertActive(entry.agentId)
    return this.#issueFor({ kind: 'agent', id: entry.agentId }, csr)
  }

  async #renew(caller: Caller, csr: string): Promise<IssuedCertificate> {
    // A revoked certificate or identity must not renew itself into a fresh certificate.
    await this.#assertNotRevoked(caller)
    if (caller.workload.kind === 'agent') {
      this.#activeAgent(caller.workload.id)
      await this.#assertActive(caller.workload.id)
    }
    return this.#issueFor(caller.workload, csr)
  }
}

/** Create the service (see {@link AuthorityService}). */
export function createAuthorityService(options: AuthorityServiceOptions): Promise<AuthorityService> {
  return AuthorityService.create(options)
}
