/**
 * The authority service's endpoints as one table: method and path, who may call it, what a
 * denial is recorded as, and the handler.
 *
 * Every endpoint an agent calls to act (mint, mint for a tool, exchange, spawn) goes through
 * one prologue, {@link actingAgentRoute}: parse the body against its strict schema, refuse a
 * body that names another agent than the caller's certificate (a caller acts only as
 * itself), bind the token to the caller's certificate (RFC 8705), and refuse an agent that
 * any replica has quarantined, before the authority is asked.
 */
import type { z } from 'zod'
import type { AuditAction, AuditEventInput } from '../audit/types.js'
import type { Authority } from '../authority/index.js'
import { PeerForbidden, RequestInvalid } from '../errors.js'
import type { WorkloadCertificate } from '../identity/peer.js'
import { DEFAULT_FEED_PAGE, MAX_FEED_PAGE, type RevocationFeed } from './feed.js'
import {
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
  RevokeIdentityBody,
  RevokeTokenBody,
  RetireBody,
  SpawnBody,
  TrustChangeBody,
} from './wire.js'
import { allowedEvent } from '../audit/events.js'

export type Caller = WorkloadCertificate
export type Access = 'public' | 'agent' | 'operator' | 'any'

export interface Route {
  readonly access: Access
  /** What the audit log calls a denial of this endpoint. */
  readonly action: AuditAction
  readonly run: (caller: Caller | undefined, body: unknown, url: URL) => Promise<unknown>
}

/** Paths the enrollment listener (no client certificate) serves; every other path is unknown there. */
export const ENROLLMENT_PATHS: ReadonlySet<string> = new Set<string>([
  PATHS.enroll,
  PATHS.jwks,
  PATHS.wellKnownJwks,
  PATHS.wellKnownMetadata,
])

/** Issued certificate, as the enrollment and renewal endpoints answer it. */
export interface IssuedCertificate {
  readonly certificatePem: string
  readonly caPem: string
  readonly notAfter: string
  readonly serialNumber: string
}

/** What the routes need of the service; the service implements it over its private state. */
export interface RouteHost {
  readonly authority: Authority
  readonly feed: RevocationFeed
  /** The agent id the caller acts as: its own, or a refusal when the body names another. */
  actingAs(named: string | undefined, caller: Caller): string
  /** The certificate thumbprint to bind the token to, or a refusal when the body asks for another. */
  binding(asked: string | undefined, caller: Caller): string | undefined
  /** Refuse an agent that any replica sharing the store has quarantined. */
  assertActive(agentId: string): Promise<void>
  /** Burn a join token and issue the first certificate of its agent. */
  enroll(token: string, csr: string): Promise<IssuedCertificate>
  /** Issue a fresh certificate to the caller. */
  renew(caller: Caller, csr: string): Promise<IssuedCertificate>
  revokeAgent(agentId: string, options: { by: string }): Promise<string[]>
  revokeCertificate(serialNumber: string, options: { by: string }): Promise<void>
  revokeIdentity(workload: { kind: 'agent' | 'operator'; id: string }, options: { by: string }): Promise<void>
  createEnrollmentToken(agentId: string, options: { ttlSeconds?: number }): string
  record(event: AuditEventInput): void
}

/** Errors the authority has already audited (its own mint/exchange/spawn denials): the service does not record them twice. */
const alreadyRecorded = new WeakSet<object>()

export function isAlreadyRecorded(error: object): boolean {
  return alreadyRecorded.has(error)
}

export function markRecorded(error: unknown): void {
  if (typeof error === 'object' && error !== null) alreadyRecorded.add(error)
}

async function kernel<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (e) {
    markRecorded(e)
    throw e
  }
}

/** Parse a request body with its strict schema; the message names each bad field, never its value. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
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

/** The caller of an authenticated listener (routes that need one are never served on the enrollment listener). */
function authenticated(caller: Caller | undefined): Caller {
  if (caller === undefined) throw new RequestInvalid('no such endpoint', { details: { rule: 'route' } })
  return caller
}

interface ActingRequest<B> {
  readonly caller: Caller
  readonly body: B
  /** The agent the caller acts as (always the caller's own id). */
  readonly agentId: string
  /** The thumbprint minted tokens are bound to, or undefined when binding is off. */
  readonly certificateThumbprint: string | undefined
}

/** An endpoint an agent calls to act as itself: the one prologue of mint, mint for a tool, exchange and spawn. */
function actingAgentRoute<S extends z.ZodType<Record<string, unknown>>>(
  host: RouteHost,
  action: AuditAction,
  schema: S,
  actingField: keyof z.infer<S> & string,
  run: (request: ActingRequest<z.infer<S>>) => Promise<unknown>,
): Route {
  return {
    access: 'agent',
    action,
    run: async (c, raw) => {
      const caller = authenticated(c)
      const body = parseBody(schema, raw)
      const agentId = host.actingAs(body[actingField] as string | undefined, caller)
      const certificateThumbprint = host.binding(body.certificateThumbprint as string | undefined, caller)
      await host.assertActive(agentId)
      return kernel(() => run({ caller, body, agentId, certificateThumbprint }))
    },
  }
}

/** An operator endpoint: only operator certificates (and, if configured, only listed operators). */
function operatorRoute(action: AuditAction, run: (operator: string, body: unknown, url: URL) => Promise<unknown>): Route {
  return { access: 'operator', action, run: (c, body, url) => run(authenticated(c).spiffeId, body, url) }
}

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

const TRUST_CHANGE_STATUSES = new Set(['pending', 'approved', 'denied'])

/** Every endpoint, keyed `METHOD /path`. */
export function buildRoutes(host: RouteHost): ReadonlyMap<string, Route> {
  const a = host.authority
  const jwks: Route = { access: 'public', action: 'key', run: async () => a.jwks() }
  const routes: Array<[string, Route]> = [
    ['GET ' + PATHS.jwks, jwks],
    ['GET ' + PATHS.wellKnownJwks, jwks],
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
          const b = parseBody(EnrollBody, body)
          return host.enroll(b.token, b.csr)
        },
      },
    ],
    [
      'POST ' + PATHS.renew,
      { access: 'any', action: 'key', run: async (c, body) => host.renew(authenticated(c), parseBody(RenewBody, body).csr) },
    ],
    [
      'POST ' + PATHS.mint,
      actingAgentRoute(host, 'mint', MintBody, 'subject', async (r) => ({
        token: await a.mint({ ...r.body, subject: r.agentId, certificateThumbprint: r.certificateThumbprint }),
      })),
    ],
    [
      'POST ' + PATHS.mintForTool,
      actingAgentRoute(host, 'mint', MintForToolBody, 'subject', (r) =>
        a.mintForTool({ ...r.body, subject: r.agentId, certificateThumbprint: r.certificateThumbprint }),
      ),
    ],
    [
      'POST ' + PATHS.exchange,
      actingAgentRoute(host, 'exchange', ExchangeBody, 'holder', async (r) => ({
        token: await a.exchange({
          ...r.body,
          holder: r.agentId,
          certificateThumbprint: r.certificateThumbprint,
          peer: { agentId: r.agentId, certificateThumbprint: r.caller.thumbprint },
        }),
      })),
    ],
    [
      'POST ' + PATHS.spawn,
      actingAgentRoute(host, 'spawn', SpawnBody, 'parent', (r) =>
        a.spawn({ parent: r.agentId, child: r.body.child as Parameters<Authority['spawn']>[0]['child'] }),
      ),
    ],
    [
      'POST ' + PATHS.retire,
      actingAgentRoute(host, 'revoke', RetireBody, 'parent', async (r) => ({
        retired: await a.retire({ parent: r.agentId, agentId: r.body.agentId }),
      })),
    ],
    [
      'POST ' + PATHS.revokeAgent,
      operatorRoute('revoke', async (by, body) => ({ revoked: await host.revokeAgent(parseBody(RevokeAgentBody, body).agentId, { by }) })),
    ],
    [
      'POST ' + PATHS.revokeToken,
      operatorRoute('revoke', async (by, body) => {
        await a.revokeToken(parseBody(RevokeTokenBody, body).jti, { by })
        return { revoked: true }
      }),
    ],
    [
      'POST ' + PATHS.revokeCertificate,
      operatorRoute('revoke', async (by, body) => {
        await host.revokeCertificate(parseBody(RevokeCertificateBody, body).serialNumber, { by })
        return { revoked: true }
      }),
    ],
    [
      'POST ' + PATHS.revokeIdentity,
      operatorRoute('revoke', async (by, body) => {
        await host.revokeIdentity(parseBody(RevokeIdentityBody, body), { by })
        return { revoked: true }
      }),
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
          const limit = Number(url.searchParams.get('limit') ?? String(DEFAULT_FEED_PAGE))
          if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_FEED_PAGE)
            throw new RequestInvalid(`limit must be an integer from 1 to ${MAX_FEED_PAGE}`, { details: { rule: 'query' } })
          const certificates = url.searchParams.get('certificates') ?? undefined
          if (certificates !== undefined && certificates.length > 128)
            throw new RequestInvalid('certificates must be a cursor from a previous page', { details: { rule: 'query' } })
          return host.feed.read(since, url.searchParams.get('epoch') ?? undefined, a.id, a.jwks(), { certificates, limit })
        },
      },
    ],
    [
      'POST ' + PATHS.trustChanges,
      {
        access: 'any',
        action: 'trust_change',
        run: async (c, body) => {
          const caller = authenticated(c)
          const request = parseBody(TrustChangeBody, body)
          // An agent asks for its own level only; operators may ask for any agent's.
          if (caller.workload.kind === 'agent' && request.agentId !== caller.workload.id)
            throw new PeerForbidden('an agent may only request a change of its own trust level', {
              details: { rule: 'on-behalf', agentId: caller.workload.id },
            })
          return a.requestTrustChange({ ...request, requestedBy: caller.spiffeId })
        },
      },
    ],
    [
      'GET ' + PATHS.trustChanges,
      operatorRoute('trust_change', async (_by, _b, url) => {
        const status = url.searchParams.get('status') ?? undefined
        if (status !== undefined && !TRUST_CHANGE_STATUSES.has(status))
          throw new RequestInvalid('status must be pending, approved or denied', { details: { rule: 'query' } })
        return a.listTrustChanges(status as 'pending' | 'approved' | 'denied' | undefined)
      }),
    ],
    [
      'POST ' + PATHS.decideTrustChange,
      operatorRoute('trust_change', async (approver, body) => {
        const b = parseBody(DecideBody, body)
        return a.decideTrustChange(b.id, { approved: b.approved, approver, note: b.note })
      }),
    ],
    [
      'POST ' + PATHS.enrollmentTokens,
      operatorRoute('key', async (by, body) => {
        const b = parseBody(EnrollmentTokenBody, body)
        const token = host.createEnrollmentToken(b.agentId, { ttlSeconds: b.ttlSeconds })
        host.record(allowedEvent('key', { origin: by, destination: b.agentId, note: 'enrollment token created' }))
        return { token }
      }),
    ],
  ]
  return new Map(routes)
}
