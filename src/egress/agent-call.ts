/**
 * Agent-to-agent HTTP, client side ("never forwards a capability token to
 * an origin other than the one it was minted for").
 *
 * Every hop whose origin is the origin registered for an agent (manifest `origin`) gets a
 * fresh, single-use capability token for that agent in the `Agent-Capability` header. Every
 * other hop has that header removed, whoever set it: undici's redirect handling strips only
 * `authorization`, `cookie` and `proxy-authorization` on a cross-origin hop, and keeps the
 * rest of the original request's headers.
 *
 * Why not `Authorization`: the capability is single-use and bound to one audience and one
 * call, not a bearer credential of the caller. A separate header keeps it apart from the
 * caller's own `Authorization` (a user's OAuth token may travel alongside), keeps generic
 * bearer middleware and proxies from accepting or logging it as a login, and lets a server
 * refuse it anywhere but on its agent endpoints.
 *
 * Subpath: `agent-trust/egress`.
 */
import type { ConnectionOptions } from 'node:tls'
import { Agent, buildConnector, interceptors, type Dispatcher } from 'undici'
import type { CapabilityIssuer } from '../authority/types.js'
import { ConfigInvalid } from '../errors.js'
import type { AuditContext } from '../policy/claims.js'
import type { Operation } from '../policy/trust.js'
import { AGENT_CAPABILITY_HEADER, agentCallScope, operationForMethod } from '../http/agent-server.js'
import { toAgentTrustError } from '../verifier/index.js'
import { withoutHeaders } from './headers.js'
import { reportDispatchError } from './dispatch-error.js'

/** An agent reachable over HTTP: its manifest id and the origin serving its endpoint. */
export interface AgentCallTarget {
  readonly agentId: string
  readonly origin: string
}

/** One hop of an agent-to-agent request, as the capability callback sees it. */
export interface AgentHop {
  /** The target agent's id (the token's `aud`). */
  readonly target: string
  /** The hop's origin, normalized (`https://host[:port]`). */
  readonly origin: string
  readonly method: string
  /** Path and query of the hop. */
  readonly path: string
}

/** What to ask the issuer for: a declared tool of the target (`mintForTool`) or exact scopes (`mint`). */
export type CapabilityRequest =
  | { readonly tool: string; readonly args?: Readonly<Record<string, unknown>> }
  | { readonly scope: readonly string[]; readonly operation: Operation }

export interface AgentCapabilityOptions {
  /** The authority (in-process `Authority` or a remote client): one token per hop. */
  readonly issuer: CapabilityIssuer
  /** The calling agent (the token's `sub`). */
  readonly subject: string
  /**
   * Who lives where: a list of `{agentId, origin}`, or a manifest whose agents declare an
   * `origin`. Tokens go only to these origins.
   */
  readonly targets: readonly AgentCallTarget[] | { readonly agents: ReadonlyArray<{ readonly id: string; readonly origin?: string }> }
  /** Audit context copied into every token: a value, or computed per hop. */
  readonly context: AuditContext | ((hop: AgentHop) => AuditContext)
  /** What each hop needs. Default {@link defaultAgentCapability}. */
  readonly capability?: (hop: AgentHop) => CapabilityRequest
  /** Token lifetime, seconds. Default: the authority's (60). */
  readonly ttlSeconds?: number
  /**
   * Bind every token to this client certificate (RFC 8705 `x5t#S256`; a function is read per
   * hop), for calls over mutual TLS with that certificate. A remote authority binds to the
   * caller's certificate by itself and refuses a different one (`ERR_TOKEN_BINDING`).
   * `createAgentCallDispatcher({ tls })` fills it from the TLS credentials.
   */
  readonly certificateThumbprint?: string | (() => string | undefined)
}

/**
 * The default convention, mirrored by the server helper's default requirement: scope
 * `agent:<target>:call`; `read` for GET/HEAD/OPTIONS, `execute` for anything else.
 */
export function defaultAgentCapability(hop: AgentHop): CapabilityRequest {
  return { scope: [agentCallScope(hop.target)], operation: operationForMethod(hop.method) }
}

/** `new URL(x).origin` for http(s) URLs; undefined otherwise. */
export function normalizeOrigin(origin: unknown): string | undefined {
  try {
    const u = origin instanceof URL ? origin : new URL(String(origin))
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined
    if (u.username !== '' || u.password !== '') return undefined
    return u.origin
  } catch {
    return undefined
  }
}

function targetMap(targets: AgentCapabilityOptions['targets']): Map<string, string> {
  const list: AgentCallTarget[] = Array.isArray(targets)
    ? [...(targets as readonly AgentCallTarget[])]
    : ((targets as { agents?: ReadonlyArray<{ id: string; origin?: string }> })?.agents ?? [])
        .filter((a) => a.origin !== undefined)
        .map((a) => ({ agentId: a.id, origin: a.origin as string }))
  const byOrigin = new Map<string, string>()
  list.forEach((t, i) => {
    const o = normalizeOrigin(t?.origin)
    if (typeof t?.agentId !== 'string' || t.agentId.length === 0 || o === undefined) {
      throw new ConfigInvalid(`targets[${i}] needs an agentId and an http(s) origin without userinfo`, { details: { rule: 'targets' } })
    }
    const u = new URL(t.origin)
    if (u.pathname !== '/' || u.search !== '' || u.hash !== '')
      throw new ConfigInvalid(`targets[${i}].origin must be a bare origin (no path)`, { details: { rule: 'targets' } })
    const other = byOrigin.get(o)
    // Two agents on one origin: a token for one could be presented to the other's endpoint.
    if (other !== undefined && other !== t.agentId)
      throw new ConfigInvalid(`targets[${i}] shares its origin with another agent`, { details: { rule: 'targets', agentId: t.agentId } })
    byOrigin.set(o, t.agentId)
  })
  return byOrigin
}

/** The registered agent origins of a `targets` option (normalized). */
export function agentTargetOrigins(targets: AgentCapabilityOptions['targets']): ReadonlySet<string> {
  return new Set(targetMap(targets).keys())
}

/**
 * The client-side interceptor. Compose it *inside* the redirect interceptor (listed before
 * it) so each hop is handled, e.g. `agent.compose(createAgentCapabilityInterceptor(o), interceptors.redirect())`;
 * {@link createEgressAgent} and {@link createAgentCallDispatcher} do this for you.
 */
export function createAgentCapabilityInterceptor(options: AgentCapabilityOptions): Dispatcher.DispatcherComposeInterceptor {
  const {
    issuer,
    subject,
    context,
    capability = defaultAgentCapability,
    ttlSeconds,
    certificateThumbprint,
  } = options ?? ({} as AgentCapabilityOptions)
  if (typeof issuer?.mint !== 'function' || typeof issuer.mintForTool !== 'function')
    throw new ConfigInvalid('issuer must implement mint and mintForTool', { details: { rule: 'issuer' } })
  if (typeof subject !== 'string' || subject.length === 0)
    throw new ConfigInvalid('subject (the calling agent) is required', { details: { rule: 'subject' } })
  if (typeof context !== 'function' && (typeof context !== 'object' || context === null))
    throw new ConfigInvalid('context is required', { details: { rule: 'context' } })
  if (typeof capability !== 'function') throw new ConfigInvalid('capability must be a function', { details: { rule: 'capability' } })
  if (
    certificateThumbprint !== undefined &&
    typeof certificateThumbprint !== 'function' &&
    (typeof certificateThumbprint !== 'string' || certificateThumbprint.length === 0)
  ) {
    throw new ConfigInvalid('certificateThumbprint must be a non-empty string or a function', {
      details: { rule: 'certificateThumbprint' },
    })
  }
  const byOrigin = targetMap(options.targets)
  const drop: ReadonlySet<string> = new Set([AGENT_CAPABILITY_HEADER])

  async function tokenFor(hop: AgentHop): Promise<string> {
    const ctx = typeof context === 'function' ? context(hop) : context
    const want = capability(hop)
    const thumbprint = typeof certificateThumbprint === 'function' ? certificateThumbprint() : certificateThumbprint
    const extra = {
      ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
      ...(thumbprint === undefined ? {} : { certificateThumbprint: thumbprint }),
    }
    if ('tool' in want) {
      const r = await issuer.mintForTool({ subject, audience: hop.target, tool: want.tool, args: want.args, context: ctx, ...extra })
      return r.token
    }
    return issuer.mint({ subject, audience: hop.target, scope: want.scope, operation: want.operation, context: ctx, ...extra })
  }

  return (dispatch) =>
    function agentCapability(opts, handler) {
      // Always strip first: a header set by the caller, or carried over from an earlier hop
      // by a redirect, must never reach an origin it was not minted for.
      const headers = withoutHeaders(opts.headers, drop)
      const origin = normalizeOrigin(opts.origin)
      const target = origin === undefined ? undefined : byOrigin.get(origin)
      if (target === undefined || origin === undefined) return dispatch({ ...opts, headers }, handler)
      const hop: AgentHop = { target, origin, method: String(opts.method), path: String(opts.path) }
      Promise.resolve()
        .then(() => tokenFor(hop))
        .then(
          (token) => {
            try {
              dispatch({ ...opts, headers: [...headers, AGENT_CAPABILITY_HEADER, token] }, handler)
            } catch (e) {
              reportDispatchError(handler, e instanceof Error ? e : new Error('dispatch failed'))
            }
          },
          (e: unknown) => reportDispatchError(handler, toAgentTrustError(e)),
        )
      return true
    }
}

/**
 * Mutual TLS for hops to registered agents. `mtlsAgentCall(credentials)` from
 * `agent-trust/identity` builds one; any object of this shape works.
 */
export interface AgentCallTls {
  /**
   * TLS options for a new connection to `target`: the client certificate and key, the CA
   * bundle, and a `checkServerIdentity` that accepts only that agent. Called per new
   * connection; returning the same object again reuses one connector.
   */
  connect(target: AgentCallTarget): ConnectionOptions
  /** The thumbprint of the certificate `connect` presents: tokens are bound to it (unless `certificateThumbprint` is given). */
  certificateThumbprint?(): string | undefined
}

export interface AgentCallDispatcherOptions extends AgentCapabilityOptions {
  /** Redirects followed for `request()` callers. Default 0 (`fetch` follows on its own). */
  readonly maxRedirections?: number
  /** undici `Agent` options (`connect` only without `tls`). */
  readonly agentOptions?: Agent.Options
  /**
   * Call registered agents over mutual TLS: every connection to a target's origin presents
   * this agent's certificate and accepts only that target's certificate; tokens are bound
   * to the certificate. Every target origin must then be `https:`. Connections to other
   * origins present no client certificate.
   */
  readonly tls?: AgentCallTls
}

function hostOrigin(o: buildConnector.Options): string | undefined {
  const host = o.hostname.includes(':') && !o.hostname.startsWith('[') ? `[${o.hostname}]` : o.hostname
  return normalizeOrigin(`${o.protocol}//${host}${o.port === '' || o.port === undefined ? '' : `:${o.port}`}`)
}

/** One connector per new socket's origin: the target's mTLS options for an agent origin, plain TLS otherwise. */
function mtlsConnector(tls: AgentCallTls, byOrigin: ReadonlyMap<string, string>, timeout: number | undefined): buildConnector.connector {
  const base = timeout === undefined ? {} : { timeout }
  const plain = buildConnector({ ...base })
  const cache = new WeakMap<object, buildConnector.connector>()
  return function agentCallConnect(opts, callback) {
    const origin = hostOrigin(opts)
    const agentId = origin === undefined ? undefined : byOrigin.get(origin)
    if (agentId === undefined || origin === undefined) return plain(opts, callback)
    let connector: buildConnector.connector | undefined
    try {
      const options = tls.connect({ agentId, origin })
      if (typeof options !== 'object' || options === null) throw new TypeError('tls.connect returned no options')
      connector = cache.get(options)
      if (connector === undefined) {
        connector = buildConnector({ ...(options as buildConnector.BuildOptions), ...base })
        cache.set(options, connector)
      }
    } catch (e) {
      // No credentials for this hop: fail closed rather than connect without a certificate.
      return callback(e instanceof Error ? e : new Error('no TLS options for this agent'), null)
    }
    return connector(opts, callback)
  }
}

/**
 * A dispatcher for agent-to-agent calls without egress checks (use {@link createEgressAgent}
 * with `capabilities` to have both). Order: redirect (outermost) -> capability -> agent.
 *
 * @example
 * ```ts
 * const dispatcher = createAgentCallDispatcher({ issuer: authority, subject: 'agent-summarizer-v2', targets: manifest, context })
 * await fetch('http://agent-database-reader:8080/documents', { dispatcher })
 * // over mutual TLS, tokens bound to the certificate (mtlsAgentCall from agent-trust/identity):
 * const mtls = createAgentCallDispatcher({ issuer, subject: 'agent-summarizer-v2', targets: manifest, context, tls: mtlsAgentCall(() => identity.credentials) })
 * ```
 */
export function createAgentCallDispatcher(options: AgentCallDispatcherOptions): Dispatcher {
  const { maxRedirections = 0, agentOptions = {}, tls } = options
  if (tls === undefined)
    return new Agent(agentOptions).compose(createAgentCapabilityInterceptor(options), interceptors.redirect({ maxRedirections }))
  if (typeof tls?.connect !== 'function')
    throw new ConfigInvalid('tls.connect must be a function (mtlsAgentCall from agent-trust/identity)', { details: { rule: 'tls' } })
  if (agentOptions.connect !== undefined)
    throw new ConfigInvalid('give either tls or agentOptions.connect, not both', { details: { rule: 'tls' } })
  const byOrigin = targetMap(options.targets)
  for (const [origin, agentId] of byOrigin) {
    // A token bound to our certificate over plain HTTP would be refused anyway; say so at start-up.
    if (!origin.startsWith('https:'))
      throw new ConfigInvalid(`agent "${agentId}" is not served over https; mutual TLS needs https origins`, {
        details: { rule: 'tls', agentId },
      })
  }
  const thumbprint =
    options.certificateThumbprint ?? (typeof tls.certificateThumbprint === 'function' ? () => tls.certificateThumbprint?.() : undefined)
  const connect = mtlsConnector(tls, byOrigin, agentOptions.connectTimeout ?? undefined)
  return new Agent({ ...agentOptions, connect }).compose(
    createAgentCapabilityInterceptor({ ...options, ...(thumbprint === undefined ? {} : { certificateThumbprint: thumbprint }) }),
    interceptors.redirect({ maxRedirections }),
  )
}
