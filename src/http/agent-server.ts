/**
 * Agent-to-agent HTTP, server side: verify the caller's capability token before the agent's
 * handler runs, for `node:http` and for any Fetch-API handler (`Request -> Response`: Hono,
 * Next.js route handlers, Deno/Bun-style servers). No undici needed.
 *
 * The token arrives in the `Agent-Capability` header (see `agent-trust/egress` for why not
 * `Authorization`). The kernel's {@link Verifier} decides (signature, claims, audience,
 * binding, revocation, replay, trust level, scope) under its enforcement mode, and records
 * an `agent_call` audit event. Denials answer through the one denial table (`denial.ts`):
 * 401 with a Bearer `invalid_token` challenge for a token that does not verify, 403
 * `insufficient_scope` for a valid token without the level or scope, 503 with `Retry-After`
 * when the store does not answer.
 *
 * Subpath: `agent-trust/egress` (and `agent-trust/http` once mapped).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AgentTrustError } from '../errors.js'
import { denialAnswer, type DenialAnswer } from './denial.js'
import type { Operation } from '../policy/trust.js'
import { toAgentTrustError, type PeerIdentity, type VerifiedCapability, type Verifier } from '../verifier/index.js'
import { peerRefused } from '../audit/events.js'
import { z } from 'zod'
import { fn, parseOptions } from '../lib/options.js'

/** The request header carrying the capability token. */
export const AGENT_CAPABILITY_HEADER = 'agent-capability'

/** GET, HEAD and OPTIONS read; every other method asks the agent to act (`execute`). */
export function operationForMethod(method: string): Operation {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS' ? 'read' : 'execute'
}

/** The default scope of an agent-to-agent call to `agentId`: `agent:<agentId>:call`. */
export function agentCallScope(agentId: string): string {
  return `agent:${agentId}:call`
}

/** What the requirement callback sees of a request (transport-neutral). */
export interface AgentCallRequestInfo {
  readonly method: string
  /** Path and query, as received. */
  readonly path: string
  /** A request header (lowercase name), or undefined. */
  header(name: string): string | undefined
}

/** What one request needs; computed by the server from the request, never taken from the caller. */
export interface AgentCallRequirement {
  readonly scope: string
  readonly operation: Operation
  /** A name for the audit record. */
  readonly tool?: string
}

export interface AgentCallGuardOptions<Req = IncomingMessage | Request> {
  /** The kernel verifier of this agent (its `id` is the tokens' audience). Its `mode` applies. */
  readonly verifier: Verifier
  /**
   * What a request needs. Default: scope `agent:<verifier.id>:call`, operation `read` for
   * GET/HEAD/OPTIONS and `execute` otherwise (the client's default mirrors this).
   */
  readonly requirement?: (request: AgentCallRequestInfo) => AgentCallRequirement
  /**
   * The caller's authenticated identity from the transport (mTLS certificate), when there is
   * one: the token's presenter must then be this agent, and a `cnf`-bound token must match
   * its certificate. Use `createPeerIdentity(...)` from `agent-trust/identity`: it throws
   * `ERR_PEER_UNAUTHENTICATED` for a connection without a valid certificate, and the request
   * is then denied with that code (401) before the token is looked at. Not called in `off` mode.
   */
  readonly peerIdentity?: (request: Req) => PeerIdentity | undefined | Promise<PeerIdentity | undefined>
}

export type AgentCallDecision =
  | { readonly allowed: true; readonly enforced: boolean; readonly capability?: VerifiedCapability }
  | {
      readonly allowed: false
      readonly status: DenialAnswer['status']
      readonly error: AgentTrustError
      readonly headers: Readonly<Record<string, string>>
      readonly body: string
    }

/** The HTTP answer for a denial: the one denial table's status, headers and body. */
export function agentCallDenial(
  error: AgentTrustError,
  realm: string,
  requiredScope?: string,
): Extract<AgentCallDecision, { allowed: false }> {
  const { status, headers, body } = denialAnswer(error, { realm, requiredScope })
  return { allowed: false, status, error, headers, body }
}

/** {@link AgentCallGuardOptions}, checked once when the guard is built. */
const AgentCallGuardOptionsSchema = z.strictObject({
  verifier: z.custom<Verifier>(
    (v) => typeof v === 'object' && v !== null && typeof (v as Verifier).authorize === 'function' && typeof (v as Verifier).id === 'string',
    { message: 'expected a kernel Verifier (createVerifier)' },
  ),
  requirement: fn<(request: AgentCallRequestInfo) => AgentCallRequirement>().optional(),
  peerIdentity: fn<(request: never) => PeerIdentity | undefined | Promise<PeerIdentity | undefined>>().optional(),
})

/**
 * Build the guard once per agent server.
 *
 * @example
 * ```ts
 * const guard = createAgentCallGuard({ verifier })
 * http.createServer(guard.node((req, res, capability) => res.end('hello ' + capability?.presenter)))
 * // or, for a Fetch-API server:
 * export default { fetch: guard.fetch(async (request, capability) => new Response('ok')) }
 * ```
 */
export function createAgentCallGuard(options: AgentCallGuardOptions): AgentCallGuard {
  const { verifier, requirement, peerIdentity } = parseOptions('createAgentCallGuard', AgentCallGuardOptionsSchema, options)
  const realm = verifier.id
  const need =
    requirement ??
    ((r: AgentCallRequestInfo): AgentCallRequirement => ({ scope: agentCallScope(realm), operation: operationForMethod(r.method) }))

  /**
   * The hook's verdict. A refusal is recorded (the verifier never sees this request) and, in
   * `enforce`, denies; in `audit` the request goes on without a peer; `off` skips the hook.
   */
  async function peerOf<R>(request: R): Promise<{ peer?: PeerIdentity; denial?: AgentCallDecision }> {
    if (peerIdentity === undefined || verifier.mode === 'off') return {}
    try {
      return {
        peer: (await (peerIdentity as (r: R) => PeerIdentity | undefined | Promise<PeerIdentity | undefined>)(request)) ?? undefined,
      }
    } catch (e) {
      const err = toAgentTrustError(e)
      const rule = err.details.rule
      verifier.audit.record(
        peerRefused('agent_call', err.code, { destination: realm, stage: 'peer', reason: rule, enforced: verifier.mode === 'enforce' }),
      )
      return verifier.mode === 'enforce' ? { denial: agentCallDenial(err, realm) } : {}
    }
  }

  async function authorize(
    info: AgentCallRequestInfo,
    token: string | undefined,
    peer: PeerIdentity | undefined,
  ): Promise<AgentCallDecision> {
    let scope: string | undefined
    try {
      const req = need(info)
      scope = req.scope
      const result = await verifier.authorize(token, {
        scope: req.scope,
        operation: req.operation,
        tool: req.tool,
        action: 'agent_call',
        peer,
      })
      // In audit mode a denial comes back as `allowed: false` after the verifier recorded
      // it; the request proceeds, unenforced.
      if (!result.allowed) return { allowed: true, enforced: false }
      return result.capability === undefined
        ? { allowed: true, enforced: result.enforced }
        : { allowed: true, enforced: result.enforced, capability: result.capability }
    } catch (e) {
      return agentCallDenial(toAgentTrustError(e), realm, scope)
    }
  }

  // Repeated headers arrive joined with ", " (node:http for unknown headers, and
  // `Headers.get`), which is never a compact JWS: the verifier refuses it as malformed.
  async function authorizeNode(req: IncomingMessage): Promise<AgentCallDecision> {
    const raw = req.headers[AGENT_CAPABILITY_HEADER]
    const token = Array.isArray(raw) ? raw.join(', ') : raw
    const info: AgentCallRequestInfo = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      header: (n) => {
        const v = req.headers[n.toLowerCase()]
        return Array.isArray(v) ? v.join(', ') : v
      },
    }
    const p = await peerOf(req)
    return p.denial ?? authorize(info, token, p.peer)
  }

  async function authorizeFetch(request: Request): Promise<AgentCallDecision> {
    const url = new URL(request.url)
    const info: AgentCallRequestInfo = {
      method: request.method,
      path: `${url.pathname}${url.search}`,
      header: (n) => request.headers.get(n) ?? undefined,
    }
    const p = await peerOf(request)
    return p.denial ?? authorize(info, request.headers.get(AGENT_CAPABILITY_HEADER) ?? undefined, p.peer)
  }

  return {
    authorize,
    authorizeNode,
    authorizeFetch,
    node(listener) {
      return function agentCallNode(req, res) {
        authorizeNode(req).then(
          (d) => {
            if (d.allowed) return listener(withoutCapabilityNode(req), res, d.capability)
            res.writeHead(d.status, d.headers)
            res.end(d.body)
          },
          () => {
            const d = agentCallDenial(toAgentTrustError(undefined), realm)
            res.writeHead(d.status, d.headers)
            res.end(d.body)
          },
        )
      }
    },
    fetch(handler) {
      return async function agentCallFetch(request) {
        const d = await authorizeFetch(request)
        if (!d.allowed) return new Response(d.body, { status: d.status, headers: d.headers })
        return handler(withoutCapabilityFetch(request), d.capability)
      }
    },
  }
}

/**
 * The application's handler never sees the capability: it was for this check only, and an
 * application that logs or echoes request headers would otherwise hand a live token on.
 */
function withoutCapabilityNode(req: IncomingMessage): IncomingMessage {
  delete req.headers[AGENT_CAPABILITY_HEADER]
  const raw = req.rawHeaders
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    if ((raw[i] as string).toLowerCase() === AGENT_CAPABILITY_HEADER) raw.splice(i, 2)
  }
  return req
}

function withoutCapabilityFetch(request: Request): Request {
  if (!request.headers.has(AGENT_CAPABILITY_HEADER)) return request
  const headers = new Headers(request.headers)
  headers.delete(AGENT_CAPABILITY_HEADER)
  return new Request(request, { headers })
}

export interface AgentCallGuard {
  /** Transport-neutral core: decide one request given its token and (optional) mTLS peer. */
  authorize(info: AgentCallRequestInfo, token: string | undefined, peer: PeerIdentity | undefined): Promise<AgentCallDecision>
  authorizeNode(req: IncomingMessage): Promise<AgentCallDecision>
  authorizeFetch(request: Request): Promise<AgentCallDecision>
  /** Wrap a `node:http` request listener: it runs only for an allowed call. */
  node(
    listener: (req: IncomingMessage, res: ServerResponse, capability: VerifiedCapability | undefined) => void,
  ): (req: IncomingMessage, res: ServerResponse) => void
  /** Wrap a Fetch-API handler: it runs only for an allowed call. */
  fetch(
    handler: (request: Request, capability: VerifiedCapability | undefined) => Response | Promise<Response>,
  ): (request: Request) => Promise<Response>
}
