/**
 * The egress guard for undici, in three parts that each check on their own:
 *
 * 1. {@link createEgressGuard}: an interceptor that decides every dispatch (every redirect
 *    hop when composed *inside* the redirect interceptor) on scheme, host, port, method,
 *    userinfo, path form and `Host` header;
 * 2. {@link createEgressConnector}: a connector that decides every new socket again on
 *    scheme, host and port, and checks every address a name resolves to inside the socket's
 *    own `lookup`, so the socket connects to exactly the addresses that were checked (no
 *    DNS-rebinding window). IP-literal hosts never reach `lookup` and are checked against
 *    the declared literals;
 * 3. {@link createEgressAgent}: an undici `Agent` with both, composed in the only safe order.
 *
 * Subpath: `agent-trust/egress` (undici is an optional peer dependency: install it to use this).
 */
import { promises as dns } from 'node:dns'
import { isIP } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import { Agent, buildConnector, Dispatcher, getGlobalDispatcher, interceptors, setGlobalDispatcher } from 'undici'
import { AgentTrustError, AuditUnavailable, ConfigInvalid } from '../errors.js'
import { createAgentCapabilityInterceptor, type AgentCapabilityOptions } from './agent-call.js'
import { headerPairs } from './headers.js'
import { parseOptions } from '../lib/options.js'
import { EgressAgentOptionsSchema, EgressConnectorOptionsSchema, EgressGuardOptionsSchema, type Resolver } from './options.js'
import { egressDenied, hostHeaderMatches, type Allowance, type EgressDecision, type EgressPolicy } from './policy.js'
import { reportDispatchError } from './dispatch-error.js'
import { refusedEvent } from '../audit/events.js'

/** One resolved address. `family` is informative: it is re-derived from `address`. */
export type { ResolvedAddress, Resolver } from './options.js'

export const systemResolver: Resolver = (hostname) => dns.lookup(hostname, { all: true, verbatim: true })

export type { EgressGuardOptions } from './guard-context.js'
import { contextOf, recordDecision, type EgressGuardOptions, type GuardContext } from './guard-context.js'
import { LegacyRedirectCheckedHandler, RedirectCheckedHandler } from './redirects.js'

/**
 * Connect options passed to undici's `buildConnector`: TLS options (`ca`, `cert`, `key`,
 * `servername`, ...), `timeout` (ms, default 10000), keep-alive. `lookup`, `socketPath`,
 * `host`, `port` and `path` are refused: each would route around the checks.
 */
export type EgressConnectOptions = Omit<ConnectionOptions, 'lookup' | 'host' | 'port' | 'path' | 'socket'> & {
  readonly allowH2?: boolean
  readonly maxCachedSessions?: number | null
  readonly timeout?: number | null
  readonly keepAlive?: boolean | null
  readonly keepAliveInitialDelay?: number | null
}

export interface EgressConnectorOptions extends EgressGuardOptions {
  /** Default: {@link systemResolver}. */
  readonly resolver?: Resolver
  readonly connect?: EgressConnectOptions
}

export interface EgressAgentOptions extends EgressConnectorOptions {
  /**
   * Redirects followed by the dispatcher itself for `request()`/`stream()` callers (each hop
   * is checked). Default 0: `fetch` follows redirects on its own, one dispatch per hop, and
   * passes `maxRedirections: 0`, so it is unaffected.
   */
  readonly maxRedirections?: number
  /** undici `Agent` options (pool sizes, timeouts in ms). `connect` and `factory` are ours. */
  readonly agentOptions?: Omit<Agent.Options, 'connect' | 'factory'>
  /**
   * Agent-to-agent capability tokens: when given, every hop to a registered agent origin gets
   * a fresh token, and every other hop has the header removed. Composed inside the redirect
   * interceptor and after the guard, so no hop is missed and no token is minted for a denied hop.
   */
  readonly capabilities?: AgentCapabilityOptions
}

/** The guard context of every egress agent, so the URL-taking entry points can decide with it. */
const contexts = new WeakMap<Dispatcher, GuardContext>()

/**
 * Decide the URL string a caller handed to `fetch`/`request` before undici parses it (see
 * `./entry.ts`): the same rules as a redirect hop's raw `Location`. Undefined when
 * `dispatcher` is not an egress agent.
 */
export function decideCallerUrl(dispatcher: Dispatcher, url: unknown, method: string): { allowed: true } | { error: Error } | undefined {
  const ctx = contexts.get(dispatcher)
  if (ctx === undefined) return undefined
  if (ctx.mode === 'off') return { allowed: true }
  const d = ctx.policy.decideUrl(url as string, method)
  if (d.allowed) return { allowed: true }
  recordDecision(ctx, d, 'url', method)
  return ctx.mode === 'enforce' ? { error: egressDenied(d, ctx.agentId) } : { allowed: true }
}

function guardInterceptor(ctx: GuardContext): Dispatcher.DispatcherComposeInterceptor {
  const { policy, agentId } = ctx
  return (dispatch) =>
    function egressGuard(opts, handler) {
      if (ctx.mode === 'enforce' && ctx.audit.admit !== undefined) {
        // A log set to deny while its trail cannot be written: nothing leaves meanwhile.
        try {
          ctx.audit.admit()
        } catch (e) {
          const err = e instanceof AgentTrustError ? e : new AuditUnavailable(undefined, { cause: e })
          ctx.audit.record(
            refusedEvent('egress', err.code, {
              origin: agentId,
              trustLevel: policy.trustLevel,
              enforced: true,
              note: 'request audit-unavailable',
            }),
          )
          reportDispatchError(handler, err)
          return false
        }
      }
      let d = policy.decideDispatch(opts.origin, opts.path, opts.method)
      if (d.allowed) d = checkRequestExtras(policy, d, opts)
      recordDecision(ctx, d, 'request', opts.method)
      if (!d.allowed && ctx.mode === 'enforce') {
        reportDispatchError(handler, egressDenied(d, agentId))
        return false
      }
      if (!d.allowed) return dispatch(opts, handler)
      const from = { origin: d.origin, path: opts.path, method: String(opts.method) }
      const checked =
        typeof (handler as { onRequestStart?: unknown }).onRequestStart === 'function'
          ? new RedirectCheckedHandler(ctx, from, handler)
          : new LegacyRedirectCheckedHandler(ctx, from, handler)
      return dispatch(opts, checked as unknown as Dispatcher.DispatchHandler)
    }
}

/** Checks that need the whole dispatch options: the Host header, upgrades for L1. */
function checkRequestExtras(policy: EgressPolicy, d: Allowance, opts: Dispatcher.DispatchOptions): EgressDecision {
  if (opts.upgrade !== undefined && opts.upgrade !== null && opts.upgrade !== false && policy.trustLevel === 'L1') {
    return { allowed: false, rule: 'method', host: d.host, origin: d.origin, reason: 'an L1 agent may not upgrade a connection' }
  }
  if (opts.headers === undefined || opts.headers === null) return d
  let pairs: Array<[string, string]>
  try {
    pairs = headerPairs(opts.headers)
  } catch {
    return { allowed: false, rule: 'host-header', host: d.host, origin: d.origin, reason: 'headers in a shape undici reads otherwise' }
  }
  for (const [name, value] of pairs) {
    if (name !== 'host') continue
    // A Host header naming another site would reach that virtual host on the declared
    // server (domain fronting). Only the request's own host (with or without its port) passes.
    if (!hostHeaderMatches(d, value))
      return { allowed: false, rule: 'host-header', host: d.host, origin: d.origin, reason: 'the Host header names another host' }
  }
  return d
}

/**
 * The egress interceptor, for composing yourself. **Order is security**: in undici's
 * `compose`, the *last* interceptor is the outermost (called first), and the redirect
 * interceptor re-dispatches every hop through the dispatch *inside* it. So the guard must
 * come *before* `redirect` in the list: `agent.compose(createEgressGuard(o), interceptors.redirect())`.
 * The other order checks the first hop only. {@link createEgressAgent} does this for you,
 * and adds the connect-time checks this interceptor cannot make.
 *
 * @example
 * ```ts
 * import { Agent, interceptors } from 'undici'
 * const dispatcher = new Agent().compose(
 *   createEgressGuard({ agentId: 'agent-summarizer-v2', trustLevel: 'L2', egress: ['https://api.example.com'] }),
 *   interceptors.redirect({ maxRedirections: 3 }),
 * )
 * ```
 */
export function createEgressGuard(options: EgressGuardOptions): Dispatcher.DispatcherComposeInterceptor {
  parseOptions('createEgressGuard', EgressGuardOptionsSchema, options)
  const ctx = contextOf(options)
  if (ctx.mode === 'off') return (dispatch) => dispatch
  return guardInterceptor(ctx)
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address?: string | Array<{ address: string; family: number }>,
  family?: number,
) => void
type LookupFunction = (
  hostname: string,
  options: { family?: number | string; all?: boolean } | LookupCallback,
  callback?: LookupCallback,
) => void

function lookupFor(ctx: GuardContext, internal: boolean, resolver: Resolver): LookupFunction {
  return function egressLookup(hostname, options, callback) {
    const cb = (typeof options === 'function' ? options : callback) as LookupCallback
    const o = typeof options === 'object' && options !== null ? options : {}
    const wanted = o.family === 4 || o.family === 'IPv4' ? 4 : o.family === 6 || o.family === 'IPv6' ? 6 : 0
    Promise.resolve()
      .then(() => resolver(hostname))
      .then(
        (answer) => {
          const list = Array.isArray(answer) ? answer : []
          // The family is derived from the address: a resolver cannot smuggle one in as the other.
          const addresses = list.map((a) => ({ address: String(a?.address), family: isIP(String(a?.address)) }))
          const base: Allowance = { allowed: true, origin: hostname, host: hostname, destinations: [], literal: false, internal }
          const d = ctx.policy.decideAddresses(
            base,
            addresses.map((a) => a.address),
          )
          recordDecision(ctx, d, 'connect')
          if (!d.allowed && ctx.mode === 'enforce') return cb(egressDenied(d, ctx.agentId))
          const usable = addresses.filter((a) => a.family !== 0 && (wanted === 0 || a.family === wanted))
          if (usable.length === 0) return cb(Object.assign(new Error(`no usable address for ${hostname}`), { code: 'ENOTFOUND' }))
          if (o.all === true) return cb(null, usable)
          const first = usable[0] as { address: string; family: number }
          return cb(null, first.address, first.family)
        },
        (err: unknown) => {
          // A resolver failure is a refusal with its own rule, not an uncoded client error.
          const code = (err as NodeJS.ErrnoException | undefined)?.code
          const cause = typeof code === 'string' && /^[A-Z_]{1,32}$/.test(code) ? code : 'ENOTFOUND'
          const d = {
            allowed: false as const,
            rule: 'resolve-failed' as const,
            host: hostname,
            reason: `the name could not be resolved (${cause})`,
            cause,
          }
          recordDecision(ctx, d, 'connect')
          cb(egressDenied(d, ctx.agentId) as unknown as NodeJS.ErrnoException)
        },
      )
  }
}

/** A literal host never reaches `lookup`; if one ever does, refuse rather than resolve it. */
const refuseLookup: LookupFunction = (_hostname, options, callback) => {
  const cb = (typeof options === 'function' ? options : callback) as LookupCallback
  cb(Object.assign(new Error('unexpected lookup for an IP-literal destination'), { code: 'ENOTFOUND' }))
}

function checkConnectOptions(connect: EgressConnectOptions | undefined): EgressConnectOptions {
  const c = (connect ?? {}) as Record<string, unknown>
  for (const k of ['lookup', 'socketPath', 'path', 'host', 'port']) {
    if (c[k] !== undefined)
      throw new ConfigInvalid(`connect.${k} would bypass the egress checks and is not accepted`, { details: { rule: 'connect' } })
  }
  return { ...c } as EgressConnectOptions
}

function connectorFor(ctx: GuardContext, options: { resolver?: Resolver; connect?: EgressConnectOptions }): buildConnector.connector {
  const resolver = options.resolver ?? systemResolver
  if (typeof resolver !== 'function') throw new ConfigInvalid('resolver must be a function', { details: { rule: 'resolver' } })
  const connect = checkConnectOptions(options.connect)
  // The lookup only sees the host name, so one connector per address rule: the matched
  // destinations decide which one a socket uses.
  const globalOnly = buildConnector({ ...connect, lookup: lookupFor(ctx, false, resolver) } as buildConnector.BuildOptions)
  const internal = buildConnector({ ...connect, lookup: lookupFor(ctx, true, resolver) } as buildConnector.BuildOptions)
  const literal = buildConnector({ ...connect, lookup: refuseLookup } as buildConnector.BuildOptions)
  return function egressConnect(opts, callback) {
    const d = ctx.policy.decideConnect(opts.protocol, opts.hostname, opts.port)
    if (!d.allowed) {
      recordDecision(ctx, d, 'connect')
      if (ctx.mode === 'enforce') return callback(egressDenied(d, ctx.agentId), null)
      return globalOnly(opts, callback)
    }
    if (d.literal || isIP(opts.hostname) !== 0) {
      recordDecision(ctx, d, 'connect')
      return literal(opts, callback)
    }
    return (d.internal ? internal : globalOnly)(opts, callback)
  }
}

/**
 * The connect-time half of the guard: an undici connector for `new Agent({ connect })` or
 * `new Client(origin, { connect })`. Checks scheme, host and port of every new socket, and
 * every address its host name resolves to; the socket uses exactly those addresses.
 */
export function createEgressConnector(options: EgressConnectorOptions): buildConnector.connector {
  parseOptions('createEgressConnector', EgressConnectorOptionsSchema, options)
  const ctx = contextOf(options)
  if (ctx.mode === 'off') return buildConnector(checkConnectOptions(options.connect) as buildConnector.BuildOptions)
  return connectorFor(ctx, options)
}

/**
 * The egress agent: an undici `Agent` whose `dispatch` runs the same chain `compose` would
 * build, `redirect (outermost) -> guard -> capability header -> Agent`, without `compose`'s
 * per-layer handler conversions on the common path (no redirects to follow at this level,
 * as with `fetch`, which follows redirects itself, one dispatch per hop).
 */
class EgressAgent extends Agent {
  readonly #hop: Dispatcher.Dispatch
  readonly #redirecting: Dispatcher
  readonly #maxRedirections: number

  constructor(ctx: GuardContext, options: EgressAgentOptions, maxRedirections: number) {
    super({ ...options.agentOptions, connect: connectorFor(ctx, options) })
    const base: Dispatcher.Dispatch = (opts, handler) => super.dispatch(opts, handler)
    const capability = options.capabilities === undefined ? undefined : createAgentCapabilityInterceptor(options.capabilities)
    this.#hop = guardInterceptor(ctx)(capability === undefined ? base : capability(base))
    this.#maxRedirections = maxRedirections
    // The redirect interceptor re-dispatches every hop through the dispatch inside it: #hop.
    // `compose` on a bare object gives it undici's handler wrapping for legacy handlers.
    this.#redirecting = Dispatcher.prototype.compose.call(
      { dispatch: this.#hop } as unknown as Dispatcher,
      interceptors.redirect({ maxRedirections }),
    )
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const max = (opts as { maxRedirections?: number }).maxRedirections ?? this.#maxRedirections
    if (max === 0 || max === null) return this.#hop(opts, handler)
    return this.#redirecting.dispatch(opts, handler)
  }
}

/**
 * An undici dispatcher for one agent's outbound HTTP: `Agent` + connect-time checks + the
 * guard on every hop. Call order: redirect (outermost) -> guard -> capability header ->
 * agent -> connector, exactly as `agent.compose(capability, createEgressGuard(o),
 * interceptors.redirect())`. Use it as `dispatcher` for undici's `fetch`/`request`, or install
 * it globally with {@link installGlobalEgress}. Composing more interceptors on top keeps
 * the guard inside them.
 *
 * @example
 * ```ts
 * import { fetch } from 'undici'
 * const dispatcher = createEgressAgent({ agentId: 'agent-summarizer-v2', trustLevel: 'L2', egress: ['https://api.example.com'] })
 * await fetch('https://external-api.com/upload', { dispatcher, method: 'POST' }) // rejects: cause.code === 'ERR_EGRESS_DENIED'
 * ```
 */
export function createEgressAgent(options: EgressAgentOptions): Dispatcher {
  parseOptions('createEgressAgent', EgressAgentOptionsSchema, options)
  const ctx = contextOf(options)
  const { maxRedirections = 0, agentOptions = {} } = options
  if (ctx.mode === 'off') {
    const capability = options.capabilities === undefined ? undefined : createAgentCapabilityInterceptor(options.capabilities)
    const redirect = interceptors.redirect({ maxRedirections })
    const plain = new Agent({ ...agentOptions, connect: checkConnectOptions(options.connect) }).compose(
      ...[capability, redirect].filter((i) => i !== undefined),
    )
    contexts.set(plain, ctx)
    return plain
  }
  const agent = new EgressAgent(ctx, options, maxRedirections)
  contexts.set(agent, ctx)
  return agent
}

export interface InstalledEgress {
  readonly dispatcher: Dispatcher
  /** Put the previous global dispatcher back (and close ours). */
  uninstall(): Promise<void>
}

/**
 * Opt in: make the egress agent undici's global dispatcher, which Node's built-in `fetch`
 * also uses. It cannot cover `node:http`/`node:https` clients (axios, got, the AWS SDK's
 * default handler), code that passes its own `dispatcher`, other undici copies that do not
 * read the global, child processes, native addons, or raw `net`/`tls` sockets: isolate the
 * process at the network layer for those.
 */
export function installGlobalEgress(options: EgressAgentOptions): InstalledEgress {
  const previous = getGlobalDispatcher()
  const dispatcher = createEgressAgent(options)
  setGlobalDispatcher(dispatcher)
  let done = false
  return {
    dispatcher,
    async uninstall() {
      if (done) return
      done = true
      if (getGlobalDispatcher() === dispatcher) setGlobalDispatcher(previous)
      await dispatcher.close()
    },
  }
}
