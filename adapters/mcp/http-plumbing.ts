/** Connect-style middleware on a plain Node server, and bounded JSON bodies. */
import { type IncomingMessage, type ServerResponse } from 'node:http'
import type { HttpMiddleware } from './http-options.js'

/** Resolves true when the middleware called next(), false when it answered the request itself. */
export function runMiddleware(mw: HttpMiddleware, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const answered = () => resolve(false)
    res.once('finish', answered)
    res.once('close', answered)
    const next = (error?: unknown) => {
      res.off('finish', answered)
      res.off('close', answered)
      if (error !== undefined) reject(error instanceof Error ? error : new Error('middleware failed'))
      else resolve(true)
    }
    Promise.resolve()
      .then(() => mw(req, withExpressHelpers(res), next))
      .catch(reject)
  })
}

/** Connect/express middleware answers through `res.status().json()` and `res.set()`: provide them on a plain Node response. */
function withExpressHelpers(res: ServerResponse): ServerResponse {
  const r = res as ServerResponse & { status?: unknown; set?: unknown; json?: unknown }
  if (typeof r.status !== 'function') {
    Object.assign(r, {
      status(code: number) {
        res.statusCode = code
        return r
      },
      set(name: string, value: string) {
        res.setHeader(name, value)
        return r
      },
      json(value: unknown) {
        if (!res.headersSent) res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify(value))
        return r
      },
    })
  }
  return res
}

export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) return undefined
    chunks.push(chunk as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    return undefined
  }
}
