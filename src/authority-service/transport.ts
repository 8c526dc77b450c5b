/**
 * The authority service's HTTP plumbing: listener timeouts, the request URL, bounded JSON
 * bodies and JSON answers. Nothing here decides who may do what.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { RequestInvalid } from '../errors.js'

/** A Host header fit to name this service in its metadata document; anything else is not echoed. */
const HOST_HEADER = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$/

/** The request's URL, with an unfit Host header replaced by a name that can never resolve (RFC 6761 `.invalid`). */
export function requestUrl(req: IncomingMessage): URL {
  const host = req.headers.host
  return new URL(req.url ?? '/', `https://${typeof host === 'string' && HOST_HEADER.test(host) ? host : 'authority.invalid'}`)
}

/** Listen with bounded header, request and keep-alive timeouts (slow clients cannot hold sockets); resolves with the URL. */
export function startListener(server: Server, options: { port?: number; host?: string }): Promise<string> {
  const { port = 0, host = '127.0.0.1' } = options
  server.keepAliveTimeout = 30_000
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      const a = server.address() as AddressInfo
      const h = a.family === 'IPv6' ? `[${a.address}]` : a.address
      resolve(`https://${h}:${a.port}`)
    })
  })
}

/** Read a JSON body of at most `maxBytes`; past that, stop reading (the answer is 413 and the connection closes). */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > maxBytes) {
      throw new RequestInvalid(`the request body exceeds ${maxBytes} bytes`, { details: { rule: 'size' } })
    }
    chunks.push(chunk as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new RequestInvalid('the request body is not JSON', { details: { rule: 'json' } })
  }
}

/** A JSON answer that no cache keeps (RFC 9111 `no-store`: answers carry tokens and certificates). */
export function sendJson(res: ServerResponse, status: number, json: string, headers: Readonly<Record<string, string>> = {}): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    ...headers,
    'content-length': Buffer.byteLength(json),
    ...(status === 413 ? { connection: 'close' } : {}),
  })
  res.end(json)
}
