/**
 * undici's `fetch` and `request`, deciding the caller's URL string first.
 *
 * undici parses a URL string with the WHATWG URL parser before any dispatcher sees it: tabs
 * and newlines are removed (URL Standard, "basic URL parser"), soft hyphens and zero-width
 * characters in a host map to nothing (UTS #46 mapping), `request` silently drops userinfo
 * and `fetch` refuses it with a plain `TypeError`, and a `%00` in a host is a `TypeError`
 * too. An egress agent used as `dispatcher` therefore decides the normalized URL only, and
 * what the parser refuses comes back uncoded. These two functions take the same arguments as
 * undici's and decide the string the caller gave with the rules every redirect hop's raw
 * `Location` gets, so every refusal is `ERR_EGRESS_DENIED` with a rule, whichever way the
 * request was made, and nothing is dispatched for a refused URL.
 */
import { fetch as undiciFetch, getGlobalDispatcher, request as undiciRequest, type Dispatcher } from 'undici'
import { ConfigInvalid } from '../errors.js'
import { decideCallerUrl } from './interceptor.js'

type FetchInput = Parameters<typeof undiciFetch>[0]
type FetchInit = NonNullable<Parameters<typeof undiciFetch>[1]>
type RequestUrl = Parameters<typeof undiciRequest>[0]
type RequestOptions = NonNullable<Parameters<typeof undiciRequest>[1]>

function decide(dispatcher: Dispatcher, url: unknown, method: unknown): void {
  const m = typeof method === 'string' ? method.toUpperCase() : 'GET'
  const verdict = decideCallerUrl(dispatcher, url, m)
  if (verdict === undefined)
    throw new ConfigInvalid(
      'the dispatcher is not an egress agent: pass one from createEgressAgent() or install it with installGlobalEgress()',
      {
        details: { rule: 'dispatcher' },
      },
    )
  if ('error' in verdict) throw verdict.error
}

function urlString(input: unknown): unknown {
  if (input instanceof URL) return input.href
  if (typeof input === 'object' && input !== null && typeof (input as { url?: unknown }).url === 'string')
    return (input as { url: string }).url
  return input
}

/**
 * undici's `fetch` through an egress agent (`init.dispatcher`, else the global dispatcher
 * installed by {@link installGlobalEgress}); refuses a dispatcher that is not one.
 *
 * @example
 * ```ts
 * import { createEgressAgent, fetch } from 'agent-trust/egress'
 * const dispatcher = createEgressAgent({ agentId: 'agent-summarizer-v2', trustLevel: 'L2', egress: ['https://api.example.com'] })
 * await fetch('https://user:pw@api.example.com/', { dispatcher }) // rejects: ERR_EGRESS_DENIED, rule userinfo
 * ```
 */
export async function fetch(input: FetchInput, init?: FetchInit): Promise<Awaited<ReturnType<typeof undiciFetch>>> {
  const dispatcher = (init?.dispatcher as Dispatcher | undefined) ?? getGlobalDispatcher()
  const method = init?.method ?? (typeof input === 'object' && input !== null && 'method' in input ? input.method : 'GET')
  decide(dispatcher, urlString(input), method)
  return undiciFetch(input, { ...init, dispatcher } as FetchInit)
}

/** undici's `request` through an egress agent, as {@link fetch}. */
export async function request(url: RequestUrl, options?: RequestOptions): Promise<Awaited<ReturnType<typeof undiciRequest>>> {
  const dispatcher = options?.dispatcher ?? getGlobalDispatcher()
  decide(dispatcher, urlString(url), options?.method ?? 'GET')
  return undiciRequest(url, { ...options, dispatcher } as RequestOptions)
}
