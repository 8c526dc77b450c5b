/**
 * Agent-to-agent HTTP, server side: verify the caller's capability token before the agent's
 * handler runs, for `node:http` and for any Fetch-API handler (`Request -> Response`: Hono,
 * Next.js route handlers, Deno/Bun-style servers). No undici needed.
 *
 * The token arrives in the `Agent-Capability` header (see `agent-trust/egress` for why not
 * `Authorization`). The kernel's {@link Verifier} decides (signature, claims, audience,
 * binding, revocation, replay, trust level, scope) under its enforcement mode, and records
 * an `agent_call` audit event. Denials answer:
 *
 * | status | when | `WWW-Authenticate` |
 * |---|---|---|
 * | 401 | no token | `AgentCapability realm="<id>"` |
 * | 401 | a token that does not verify (malformed, expired, replayed, revoked, wrong audience, bound to another certificate or agent, ...) | `..., error="invalid_token"` |
 * | 401 | the `peerIdentity` hook refused the connection's certificate (`ERR_PEER_UNAUTHENTICATED`: none, expired, revoked, ...) | `AgentCapability realm="<id>"` |
 * | 403 | a valid token without the level or the scope this request needs | `..., error="insufficient_scope", scope="..."` |
 * | 403 | the peer's certificate names a workload that may not call (`ERR_PEER_FORBIDDEN`) | none |
 * | 503 | the replay/revocation store did not answer (`ERR_STORE_UNAVAILABLE`, fail closed) | none; `Retry-After: 1` |
 * | 500 | anything unexpected (`ERR_GENERIC`, denied) | none |
 *
 * The body is `{"error":{"code":"ERR_...","message":"..."}}` with the catalogue's generic
 * text: never the token, never internal details.
 *
 * Subpath: `agent-trust/egress` (and `agent-trust/http` once mapped).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ERROR_CATALOG, type AgentTrustError, type AgentTrustErrorCode } from '../errors.js'
import type { Operation } from '../policy/trust.js'
import { toAgentTrustError, type PeerIdentity, type VerifiedCapability, type Verifier } from '../verifier/index.js'

/** The request header carrying the capability token. */
export const AGENT_CAPABILITY_HEADER = 'agent-capability'
/** The authentication scheme named in `WWW-Authenticate`. */
export const AGENT_CAPABILITY_SCHEME = 'AgentCapability'

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
      readonly status: 401 | 403 | 500 | 503
      readonly error: AgentTrustError
      readonly headers: Readonly<Record<string, string>>
      readonly body: string
    }

const FORBIDDEN: ReadonlySet<AgentTrustErrorCode> = new Set(['ERR_TRUST_LEVEL', 'ERR_SCOPE_DENIED'])
const UNAUTHORIZED: ReadonlySet<AgentTrustErrorCode> = new Set([
  'ERR_TOKEN_MISSING',
  'ERR_TOKEN_MALFORMED',
  'ERR_TOKEN_ALG',
  'ERR_TOKEN_KEY_UNKNOWN',
  'ERR_TOKEN_SIGNATURE',
  'ERR_TOKEN_CLAIMS',
  'ERR_TOKEN_EXPIRED',
  'ERR_TOKEN_NOT_YET_VALID',
  'ERR_TOKEN_AUDIENCE',
  'ERR_TOKEN_ISSUER',
  'ERR_TOKEN_LIFETIME',
  'ERR_TOKEN_BINDING',
  'ERR_TOKEN_REVOKED',
  'ERR_AGENT_REVOKED',
  'ERR_TOKEN_REPLAYED',
])

function quoted(v: string): string {
  return `"${v.replace(/[^\x20-\x7e]|["\\]/g, '')}"`
}

/** The HTTP answer for a denial: status, headers and a JSON body without secrets. */
export function agentCallDenial(
  error: AgentTrustError,
  realm: string,
  requiredScope?: string,
): Extract<AgentCallDecision, { allowed: false }> {
  const code = error.code
  const base = `${AGENT_CAPABILITY_SCHEME} realm=${quoted(realm)}`
  const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store' }
  let status: 401 | 403 | 500 | 503
  if (UNAUTHORIZED.has(code)) {
    status = 401
    headers['www-authenticate'] = code === 'ERR_TOKEN_MISSING' ? base : `${base}, error="invalid_token"`
  } else if (code === 'ERR_PEER_UNAUTHENTICATED') {
    // The connection, not the token, failed: no token error to report.
    status = 401
    headers['www-authenticate'] = base
  } else if (code === 'ERR_PEER_FORBIDDEN') {
    status = 403
  } else if (FORBIDDEN.has(code)) {
    status = 403
    headers['www-authenticate'] =
      `${base}, error="insufficient_scope"${requiredScope === undefined ? '' : `, scope=${quoted(requiredScope)}`}`
  } else if (code === 'ERR_STORE_UNAVAILABLE') {
    status = 503
    headers['retry-after'] = '1'
  } else {
    status = 500
  }
  const body = JSON.stringify({ error: { code, message: ERROR_CATALOG[code].when } })
  return { allowed: false, status, error, headers, body }
}

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
  const { verifier, requirement, peerIdentity } = options ?? ({} as AgentCallGuardOptions)
  if (typeof verifier?.authorize !== 'function' || typeof verifier.id !== 'string')
    throw new TypeError('verifier (a kernel Verifier) is required')
  if (requirement !== undefined && typeof requirement !== 'function') throw new TypeError('requirement must be a function')
  if (peerIdentity !== undefined && typeof peerIdentity !== 'function') throw new TypeError('peerIdentity must be a function')
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
      verifier.audit.record({
        action: 'agent_call',
        decision: 'deny',
        code: err.code,
        destination: realm,
        enforced: verifier.mode === 'enforce',
        note: `peer refused${typeof rule === 'string' ? `: ${rule.slice(0, 32)}` : ''}`,
      })
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
            if (d.allowed) return listener(req, res, d.capability)
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
        return handler(request, d.capability)
      }
    },
  }
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
