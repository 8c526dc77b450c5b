/**
 * Serve the authority's public JWKS over HTTP, framework-neutral: a Fetch-API handler
 * (`(Request) => Response`: Hono, Bun, Deno, Next.js route handlers, undici servers) and a
 * `node:http` handler (`(req, res)`: http.createServer, Express, Fastify's raw handler).
 *
 * Headers: `Content-Type: application/jwk-set+json`, `Cache-Control: public,
 * max-age=<maxAgeSeconds>, must-revalidate` and a strong `ETag` (a `If-None-Match` that
 * matches gets `304`). Keep `maxAgeSeconds` well below the key manager's `prepublishMs`
 * (default 60 s vs 5 min) so that every cache holds a new key before it signs, and below
 * the overlap (330 s) so that a revoked key leaves caches quickly.
 *
 * The handlers answer GET and HEAD on whatever path they are mounted at; anything else is
 * `405`. They serve public members only, whatever the source returns.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { z } from 'zod'
import { sha256b64url } from '../lib/hash.js'
import { parseOptions } from '../lib/options.js'
import { publicJwkOf, type JSONWebKeySet } from './index.js'

/** Where the handler reads the JWKS: a `KeySet`/`Authority`/`KeyManager.keys`, or a function. */
export type JwksProvider = { jwks(): JSONWebKeySet } | (() => JSONWebKeySet)

export interface JwksHandlerOptions {
  /** `Cache-Control: max-age`, seconds. Default 60. */
  readonly maxAgeSeconds?: number
}

/** `createJwksHandler(provider, options)`, checked once when the handler is built. */
const JwksHandlerArgsSchema = z.strictObject({
  provider: z.custom<JwksProvider>(
    (v) => typeof v === 'function' || (typeof v === 'object' && v !== null && typeof (v as { jwks?: unknown }).jwks === 'function'),
    { message: 'expected a KeySet, an Authority, or a function returning a JWKS' },
  ),
  options: z.strictObject({ maxAgeSeconds: z.int().min(0).max(3600).optional() }).optional(),
})

interface Rendered {
  readonly body: string
  readonly etag: string
}

function compiled(factory: string, provider: JwksProvider, options: JwksHandlerOptions): { render(): Rendered; cacheControl: string } {
  const args = parseOptions(factory, JwksHandlerArgsSchema, { provider, options })
  const get = typeof provider === 'function' ? provider : () => provider.jwks()
  const { maxAgeSeconds = 60 } = args.options ?? {}
  // Render once per JWKS object: KeySet returns the same object until its keys change.
  let last: JSONWebKeySet | undefined
  let rendered: Rendered | undefined
  return {
    cacheControl: `public, max-age=${maxAgeSeconds}, must-revalidate`,
    render(): Rendered {
      const jwks = get()
      if (jwks !== last || rendered === undefined) {
        const keys = (Array.isArray(jwks?.keys) ? jwks.keys : [])
          .filter((k) => typeof k?.kid === 'string')
          .map((k) => publicJwkOf(k, k.kid as string))
        const body = JSON.stringify({ keys })
        rendered = { body, etag: `"${sha256b64url(body)}"` }
        last = jwks
      }
      return rendered
    },
  }
}

function matches(ifNoneMatch: string | null | undefined, etag: string): boolean {
  if (ifNoneMatch === null || ifNoneMatch === undefined) return false
  return ifNoneMatch.split(',').some((t) => {
    const v = t.trim()
    return v === '*' || v === etag || v === `W/${etag}`
  })
}

/**
 * A Fetch-API handler: `(request: Request) => Response`.
 *
 * @example
 * ```ts
 * const jwks = jwksFetchHandler(authority)
 * app.get('/.well-known/jwks.json', (c) => jwks(c.req.raw)) // Hono
 * ```
 */
export function jwksFetchHandler(provider: JwksProvider, options: JwksHandlerOptions = {}): (request: Request) => Response {
  const c = compiled('jwksFetchHandler', provider, options)
  return function jwksHandler(request: Request): Response {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return new Response(null, { status: 405, headers: { Allow: 'GET, HEAD' } })
    }
    const { body, etag } = c.render()
    const headers = { 'Cache-Control': c.cacheControl, ETag: etag, 'X-Content-Type-Options': 'nosniff' }
    if (matches(request.headers.get('if-none-match'), etag)) return new Response(null, { status: 304, headers })
    return new Response(request.method === 'HEAD' ? null : body, {
      status: 200,
      headers: { ...headers, 'Content-Type': 'application/jwk-set+json' },
    })
  }
}

/**
 * A `node:http` handler: `(req, res) => void`.
 *
 * @example
 * ```ts
 * const jwks = jwksNodeHandler(manager.keys)
 * http.createServer((req, res) => (req.url === '/.well-known/jwks.json' ? jwks(req, res) : notFound(res))).listen(8080)
 * ```
 */
export function jwksNodeHandler(
  provider: JwksProvider,
  options: JwksHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const c = compiled('jwksNodeHandler', provider, options)
  return function jwksHandler(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end()
      return
    }
    const { body, etag } = c.render()
    const headers = { 'Cache-Control': c.cacheControl, ETag: etag, 'X-Content-Type-Options': 'nosniff' }
    if (matches(req.headers['if-none-match'], etag)) {
      res.writeHead(304, headers).end()
      return
    }
    res.writeHead(200, { ...headers, 'Content-Type': 'application/jwk-set+json', 'Content-Length': Buffer.byteLength(body) })
    res.end(req.method === 'HEAD' ? undefined : body)
  }
}

/** Both handlers for one provider. */
export function createJwksHandler(
  provider: JwksProvider,
  options: JwksHandlerOptions = {},
): {
  fetch: (request: Request) => Response
  node: (req: IncomingMessage, res: ServerResponse) => void
} {
  return { fetch: jwksFetchHandler(provider, options), node: jwksNodeHandler(provider, options) }
}
