/**
 * Redirects decided before anyone follows them: the guard's view of a response, for both of
 * undici's handler APIs. A refused `Location` fails the request with the coded error, so no
 * later hop is dispatched and no socket is opened for it.
 */
import type { Dispatcher } from 'undici'
import { egressDenied } from './policy.js'
import { decideRedirect, isRedirectStatus } from './redirect-policy.js'
import { recordDecision, type GuardContext } from './guard-context.js'

export interface Hop {
  readonly origin: string
  readonly path: string
  readonly method: string
}

/**
 * Decide a redirect answer before whoever follows it (undici's redirect interceptor, `fetch`,
 * the caller) sees it: a refused `Location` fails the request with the coded error, so no
 * later hop is dispatched and no socket is opened for it. The next hop, if followed, is
 * dispatched through the guard again.
 */
function redirectRefusal(ctx: GuardContext, from: Hop, status: number, location: string | undefined, count: number): Error | undefined {
  if (!isRedirectStatus(status) || count === 0) return undefined
  const r =
    count > 1
      ? { decision: { allowed: false as const, rule: 'url-invalid' as const, reason: 'the redirect has more than one Location' } }
      : decideRedirect(ctx.policy, from, status, location as string, ctx.agentOrigins)
  const d = r.decision
  if (d.allowed) return undefined
  recordDecision(ctx, d, 'request', from.method)
  if (ctx.mode !== 'enforce') return undefined
  return egressDenied(d, ctx.agentId)
}

/** The guard's view of a response, for handlers speaking undici's handler API (`onRequestStart`, ...). */
export class RedirectCheckedHandler {
  readonly #ctx: GuardContext
  readonly #from: Hop
  readonly #h: Dispatcher.DispatchHandler
  #failed = false
  constructor(ctx: GuardContext, from: Hop, h: Dispatcher.DispatchHandler) {
    this.#ctx = ctx
    this.#from = from
    this.#h = h
  }
  onRequestStart(c: Dispatcher.DispatchController, context: unknown): void {
    this.#h.onRequestStart?.(c, context)
  }
  onRequestUpgrade(c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeadersLike, socket: unknown): void {
    this.#h.onRequestUpgrade?.(c, status, headers as never, socket as never)
  }
  onResponseStart(c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeadersLike, text: string): void {
    if (isRedirectStatus(status)) {
      const loc = headers.location
      const list = loc === undefined ? [] : Array.isArray(loc) ? loc : [loc]
      const err = redirectRefusal(this.#ctx, this.#from, status, list[0], list.length)
      if (err !== undefined) {
        this.#failed = true
        c.abort(err)
        return
      }
    }
    this.#h.onResponseStart?.(c, status, headers as never, text)
  }
  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#failed) this.#h.onResponseData?.(c, chunk)
  }
  onResponseEnd(c: Dispatcher.DispatchController, trailers: IncomingHttpHeadersLike): void {
    if (!this.#failed) this.#h.onResponseEnd?.(c, trailers as never)
  }
  onResponseError(c: Dispatcher.DispatchController, err: Error): void {
    this.#h.onResponseError?.(c, err)
  }
}

type IncomingHttpHeadersLike = Record<string, string | string[] | undefined>

/** The same, for handlers speaking the legacy API (`onConnect`, `onHeaders`, ...): `request()` and `fetch`. */
export class LegacyRedirectCheckedHandler {
  readonly #ctx: GuardContext
  readonly #from: Hop
  readonly #h: LegacyHandler
  #abort: ((err: Error) => void) | undefined
  #failed = false
  constructor(ctx: GuardContext, from: Hop, h: Dispatcher.DispatchHandler) {
    this.#ctx = ctx
    this.#from = from
    this.#h = h as unknown as LegacyHandler
  }
  onConnect(abort: (err: Error) => void, context?: unknown): void {
    this.#abort = abort
    this.#h.onConnect?.(abort, context)
  }
  onUpgrade(status: number, raw: Buffer[] | string[], socket: unknown): void {
    this.#h.onUpgrade?.(status, raw, socket)
  }
  onResponseStarted(): void {
    this.#h.onResponseStarted?.()
  }
  onBodySent(chunk: unknown): void {
    this.#h.onBodySent?.(chunk)
  }
  onRequestSent(): void {
    this.#h.onRequestSent?.()
  }
  onHeaders(status: number, raw: Array<Buffer | string>, resume: () => void, text: string): boolean {
    if (isRedirectStatus(status)) {
      let location: string | undefined
      let count = 0
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const k = raw[i] as Buffer | string
        if (k.length === 8 && k.toString().toLowerCase() === 'location') {
          count++
          location ??= (raw[i + 1] as Buffer | string).toString('latin1')
        }
      }
      const err = redirectRefusal(this.#ctx, this.#from, status, location, count)
      if (err !== undefined) {
        this.#failed = true
        if (this.#abort !== undefined) this.#abort(err)
        else this.#h.onError?.(err)
        return false
      }
    }
    return this.#h.onHeaders?.(status, raw, resume, text) ?? true
  }
  onData(chunk: Buffer): boolean {
    return this.#failed ? false : (this.#h.onData?.(chunk) ?? true)
  }
  onComplete(trailers: unknown): void {
    if (!this.#failed) this.#h.onComplete?.(trailers)
  }
  onError(err: Error): void {
    this.#h.onError?.(err)
  }
}

export interface LegacyHandler {
  onConnect?(abort: (err: Error) => void, context?: unknown): void
  onUpgrade?(status: number, raw: unknown, socket: unknown): void
  onResponseStarted?(): void
  onBodySent?(chunk: unknown): void
  onRequestSent?(): void
  onHeaders?(status: number, raw: unknown, resume: () => void, text: string): boolean
  onData?(chunk: Buffer): boolean
  onComplete?(trailers: unknown): void
  onError?(err: Error): void
}
