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
import { z } from 'zod'
import type { CapabilityIssuer } from '../authority/types.js'
import { fn, optionProblem, parseOptions, withMethods } from '../lib/options.js'
import type { AuditContext } from '../policy/claims.js'
import { MAX_AGENT_ID_LENGTH, MAX_TOKEN_LIFETIME_SECONDS } from '../policy/limits.js'
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

type TargetProblem = { readonly path: readonly PropertyKey[]; readonly text: string }

/** The `{agentId, origin}` list of a `targets` option, each with its option path. */
function targetList(targets: AgentCapabilityOptions['targets']): Array<{ t: Partial<AgentCallTarget>; path: PropertyKey[] }> {
  if (Array.isArray(targets)) return (targets as readonly AgentCallTarget[]).map((t, i) => ({ t: t ?? {}, path: [i] }))
  const agents = (targets as { agents?: ReadonlyArray<{ id: string; origin?: string }> } | undefined)?.agents ?? []
  return agents.flatMap((a, i) => (a?.origin === undefined ? [] : [{ t: { agentId: a.id, origin: a.origin }, path: ['agents', i] }]))
}

/**
 * What is wrong with `targets`: an entry without an agent id or an http(s) origin, an origin
 * with a path, query or fragment, or two agents on one origin (a token minted for one could
 * be presented to the other's endpoint).
 */
function targetProblems(targets: AgentCapabilityOptions['targets']): TargetProblem[] {
  const out: TargetProblem[] = []
  const byOrigin = new Map<string, string>()
  for (const { t, path } of targetList(targets)) {
    const o = normalizeOrigin(t.origin)
    if (typeof t.agentId !== 'string' || t.agentId.length === 0 || t.agentId.length > MAX_AGENT_ID_LENGTH) {
      out.push({
        path: [...path, Array.isArray(targets) ? 'agentId' : 'id'],
        text: `expected an agent id of 1-${MAX_AGENT_ID_LENGTH} characters`,
      })
    } else if (o === undefined) {
      out.push({ path: [...path, 'origin'], text: 'expected an http(s) origin without userinfo' })
    } else {
      const u = new URL(String(t.origin))
      if (u.pathname !== '/' || u.search !== '' || u.hash !== '')
        out.push({ path: [...path, 'origin'], text: 'expected a bare origin (no path)' })
      else if ((byOrigin.get(o) ?? t.agentId) !== t.agentId)
        out.push({ path: [...path, 'origin'], text: 'shares its origin with another agent' })
      else byOrigin.set(o, t.agentId)
    }
  }
  return out
}

/** Registered origin -> agent id. `targets` passed {@link targetProblems} (the schemas check it); refused otherwise. */
function targetMap(targets: AgentCapabilityOptions['targets']): Map<string, string> {
  const bad = targetProblems(targets)[0]
  if (bad !== undefined) throw optionProblem('agent capabilities', ['targets', ...bad.path], bad.text)
  const byOrigin = new Map<string, string>()
  for (const { t } of targetList(targets)) byOrigin.set(normalizeOrigin(t.origin) as string, t.agentId as string)
  return byOrigin
}

const TargetsSchema = z
  .union(
    [
      // Entries are checked one by one below, each problem with its own path.
      z.array(z.looseObject({})).readonly(),
      z.looseObject({ agents: z.array(z.looseObject({})).readonly() }),
    ],
    { error: 'expected a list of { agentId, origin } or a manifest' },
  )
  .superRefine((targets, ctx) => {
    for (const p of targetProblems(targets as AgentCapabilityOptions['targets']))
      ctx.addIssue({ code: 'custom', path: [...p.path], message: p.text })
  })

/** {@link AgentCapabilityOptions}, checked once when the interceptor (or a dispatcher holding one) is built. */
const AgentCapabilityShape = {
  issuer: withMethods<CapabilityIssuer>('mint', 'mintForTool'),
  subject: z.string().min(1).max(MAX_AGENT_ID_LENGTH),
  targets: TargetsSchema,
  context: z.union([fn<(hop: AgentHop) => AuditContext>(), z.looseObject({})], { error: 'expected an audit context or a function' }),
  capability: fn<(hop: AgentHop) => CapabilityRequest>().optional(),
  ttlSeconds: z.int().min(1).max(MAX_TOKEN_LIFETIME_SECONDS).optional(),
  certificateThumbprint: z
    .union([z.string().min(1), fn<() => string | undefined>()], { error: 'expected a thumbprint or a function' })
    .optional(),
}
export const AgentCapabilityOptionsSchema = z.strictObject(AgentCapabilityShape)

const AgentCallDispatcherOptionsSchema = z
  .strictObject({
    ...AgentCapabilityShape,
    maxRedirections: z.int().min(0).max(20).optional(),
    agentOptions: z.looseObject({}).optional(),
    tls: withMethods<AgentCallTls>('connect').optional(),
  })
  .superRefine((o, ctx) => {
    if (o.tls === undefined) return
    if (o.agentOptions?.connect !== undefined)
      ctx.addIssue({ code: 'custom', path: ['agentOptions', 'connect'], message: 'give either tls or agentOptions.connect, not both' })
    for (const { t, path } of targetList(o.targets as AgentCapabilityOptions['targets'])) {
      // A token bound to our certificate over plain HTTP would be refused anyway; say so at start-up.
      if (normalizeOrigin(t.origin)?.startsWith('http:') === true)
        ctx.addIssue({ code: 'custom', path: ['targets', ...path, 'origin'], message: 'expected an https origin (mutual TLS)' })
    }
  })

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
  parseOptions('createAgentCapabilityInterceptor', AgentCapabilityOptionsSchema, options)
  const { issuer, subject, context, capability = defaultAgentCapability, ttlSeconds, certificateThumbprint } = options
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
  parseOptions('createAgentCallDispatcher', AgentCallDispatcherOptionsSchema, options)
  const { maxRedirections = 0, agentOptions = {}, tls, ...rest } = options
  const capabilities: AgentCapabilityOptions = rest
  if (tls === undefined)
    return new Agent(agentOptions).compose(createAgentCapabilityInterceptor(capabilities), interceptors.redirect({ maxRedirections }))
  const byOrigin = targetMap(options.targets)
  const thumbprint =
    options.certificateThumbprint ?? (typeof tls.certificateThumbprint === 'function' ? () => tls.certificateThumbprint?.() : undefined)
  const connect = mtlsConnector(tls, byOrigin, agentOptions.connectTimeout ?? undefined)
  return new Agent({ ...agentOptions, connect }).compose(
    createAgentCapabilityInterceptor({ ...capabilities, ...(thumbprint === undefined ? {} : { certificateThumbprint: thumbprint }) }),
    interceptors.redirect({ maxRedirections }),
  )
}
