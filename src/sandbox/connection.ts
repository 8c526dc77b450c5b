/**
 * One client connection to the egress proxy. Requests are read one at a time: each request
 * head is parsed and decided on its own (a keep-alive connection never carries a second
 * request on the first one's verdict), its body is relayed as framed, and the next head is
 * read only after the response has ended. The request is forwarded in origin-form on a
 * kept-alive connection to the address that was checked.
 */
import type { Socket } from 'node:net'
import { type Allowance, type Denial, type EgressDecision, type EgressPolicy } from '../egress/policy.js'
import { egressMethods } from '../policy/trust.js'
import {
  BodyTracker,
  forwardHead,
  listValues,
  parseRequestHead,
  parseResponseHead,
  requestFraming,
  responseFraming,
  type Framing,
  type RequestHead,
} from './http1.js'
import type { Pinned } from './pin.js'
import { openTunnel } from './tunnel.js'
import type { Upstream, UpstreamHandler, UpstreamPool } from './upstream.js'

export interface ProxyContext {
  readonly policy: EgressPolicy
  readonly pin: (a: Allowance, hostname: string) => Pinned | Promise<Pinned>
  readonly record: (d: EgressDecision, stage: string, method: string) => void
  /** The whole 403 answer for a denial (status line, fields, body). */
  readonly refusal: (d: Denial) => string
  readonly pool: UpstreamPool
  readonly tunnels: Set<Socket>
}

const EMPTY = Buffer.alloc(0)
/** A kept-alive client connection with no request in flight is closed after this long. */
const CLIENT_IDLE_MS = 60_000
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])
const BAD_GATEWAY = plain(502, 'Bad Gateway', 'agent-trust sandbox proxy: the upstream did not answer or answered malformed HTTP\n')

function plain(status: number, phrase: string, body: string): string {
  return `HTTP/1.1 ${status} ${phrase}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
}
const join = (a: Buffer, b: Buffer): Buffer => (a.length === 0 ? b : Buffer.concat([a, b]))
const deny = (rule: Denial['rule'], reason: string, d?: { host?: string; origin?: string }): Denial => ({
  allowed: false,
  rule,
  reason,
  ...(d?.host === undefined ? {} : { host: d.host }),
  ...(d?.origin === undefined ? {} : { origin: d.origin }),
})

export class ClientConnection implements UpstreamHandler {
  readonly #client: Socket
  readonly #ctx: ProxyContext
  #pending: Buffer = EMPTY
  #busy = false
  #closing = false
  // The exchange in flight.
  #up: Upstream | undefined
  #method = ''
  #req: BodyTracker | undefined
  #res: BodyTracker | undefined
  #rbuf: Buffer = EMPTY
  #minor: 0 | 1 = 1
  #reuse = false
  #closeAfter = false
  #ended = false
  #sent = false
  #resUntilClose = false
  #waitingDrain = false
  /** An exchange ended while the client was not draining: the next request is read on 'drain'. */
  #nextAfterDrain = false
  /** The request as forwarded, while it may be sent again on a fresh connection (no body, nothing answered yet). */
  #retry: { first: Buffer; key: string; address: string; port: number } | undefined

  constructor(client: Socket, ctx: ProxyContext) {
    this.#client = client
    this.#ctx = ctx
    client.on('data', this.#onData)
    client.on('error', () => client.destroy())
    // A client that is done sending still gets the answer to its last request (RFC 9112 section 9.6).
    client.on('end', this.#onEnd)
    client.on('close', () => {
      const up = this.#up
      this.#up = undefined
      if (up !== undefined) {
        up.handler = undefined
        up.socket.destroy()
      }
    })
    client.setTimeout(CLIENT_IDLE_MS, () => {
      if (!this.#busy) client.destroy()
    })
  }

  readonly #onData = (d: Buffer): void => {
    if (this.#closing) return
    if (this.#req !== undefined && !this.#req.done) return this.#sendBody(d)
    this.#pending = join(this.#pending, d)
    if (this.#busy) this.#client.pause()
    else this.#next()
  }

  readonly #onEnd = (): void => {
    this.#ended = true
    this.#closeAfter = true
    if (!this.#busy) this.#next()
  }

  #next(): void {
    if (this.#closing) return
    const r = this.#pending.length === 0 ? undefined : parseRequestHead(this.#pending)
    if (r === undefined) {
      if (this.#ended) this.#end()
      return
    }
    if (!r.ok) return this.#malformed(r.error, r.error.includes('too large') ? 431 : 400)
    this.#pending = this.#pending.subarray(r.head.size)
    this.#busy = true
    this.#client.pause()
    if (r.head.method === 'CONNECT') return this.#connect(r.head)
    this.#request(r.head)
  }

  #request(head: RequestHead): void {
    const { method, target } = head
    const framing = requestFraming(head)
    if (!framing.ok) return this.#malformed(framing.error, 400)
    // Only absolute-form reaches the outside; an origin-form request is for the proxy itself.
    let d = /^https?:\/\//i.test(target)
      ? this.#ctx.policy.decideUrl(target, method)
      : deny('url-invalid', 'a proxy request must be absolute-form (http://host/path)')
    if (d.allowed && target.toLowerCase().startsWith('https:')) d = deny('scheme', 'https goes through CONNECT', d)
    // RFC 9112 section 3.2.2: a proxy ignores the Host of an absolute-form request and sends
    // the request-target's own; the Host a client wrote can never pick another virtual host.
    if (!d.allowed) {
      this.#ctx.record(d, 'request', method)
      return this.#refuse(d)
    }
    const allowance = d
    const url = new URL(target)
    const p = this.#ctx.pin(allowance, url.hostname)
    if (p instanceof Promise) void p.then((v) => this.#forward(head, allowance, url, v, framing.framing))
    else this.#forward(head, allowance, url, p, framing.framing)
  }

  #forward(head: RequestHead, d: Allowance, url: URL, p: Pinned, framing: Framing): void {
    if (this.#client.destroyed) return
    if (!p.ok) {
      this.#ctx.record(p.denial, 'connect', head.method)
      return this.#refuse(p.denial)
    }
    this.#ctx.record(d, 'request', head.method)
    const port = url.port === '' ? 80 : Number(url.port)
    this.#method = head.method
    this.#minor = head.minor
    this.#closeAfter = this.#ended || head.minor === 0 || listValues(head.fields, 'connection').includes('close')
    this.#reuse = false
    this.#sent = false
    this.#rbuf = EMPTY
    this.#res = undefined
    // An HTTP/1.0 client gets an HTTP/1.0 exchange upstream (no chunked answer it could not read).
    const out = forwardHead(
      `${head.method} ${url.pathname}${url.search} HTTP/1.${head.minor}`,
      head.fields,
      head.minor === 0
        ? [
            ['host', url.host],
            ['connection', 'close'],
          ]
        : [['host', url.host]],
      ['host'],
    )
    const req = new BodyTracker(framing)
    this.#req = req
    const n = req.feed(this.#pending)
    const first = n === 0 ? out : Buffer.concat([out, this.#pending.subarray(0, n)])
    this.#pending = this.#pending.subarray(n)
    if (req.error !== undefined) return this.#malformed(req.error, 400)
    const key = `${d.origin}|${p.address}|${port}`
    // Only a safe method without a body is sent again (RFC 9112 section 9.3.1, RFC 9110 section 9.2.1).
    this.#retry = framing.kind === 'none' && SAFE.has(head.method) ? { first, key, address: p.address, port } : undefined
    this.#dial(key, p.address, port, first, false)
    if (!req.done) this.#client.resume()
  }

  #dial(key: string, address: string, port: number, first: Buffer, fresh: boolean): void {
    const up = this.#ctx.pool.take(key, address, port, fresh)
    up.handler = this
    this.#up = up
    up.socket.write(first)
  }

  #sendBody(d: Buffer): void {
    const req = this.#req as BodyTracker
    const up = this.#up
    const n = req.feed(d)
    if (req.error !== undefined) return this.#abort()
    if (n < d.length) this.#pending = join(this.#pending, d.subarray(n))
    if (req.done) this.#client.pause()
    if (up === undefined || n === 0) return
    if (!up.socket.write(n === d.length ? d : d.subarray(0, n))) {
      this.#client.pause()
      up.socket.once('drain', () => {
        if (this.#up === up && !req.done) this.#client.resume()
      })
    }
  }

  onData(d: Buffer): void {
    this.#retry = undefined
    if (this.#res === undefined) return this.#head(d)
    const res = this.#res
    const n = res.feed(d)
    if (res.error !== undefined) return this.#abort()
    if (n < d.length) this.#reuse = false
    if (n > 0) this.#write(n === d.length ? d : d.subarray(0, n))
    if (res.done) this.#finish()
  }

  #head(d: Buffer): void {
    this.#rbuf = join(this.#rbuf, d)
    for (;;) {
      const r = parseResponseHead(this.#rbuf)
      if (r === undefined) return
      if (!r.ok) return this.#badGateway()
      const h = r.head
      if (h.status < 200) {
        // Interim answers (100 Continue, 103) pass; a switch of protocol was never asked for (Upgrade is hop-by-hop).
        if (h.status === 101) return this.#badGateway()
        if (this.#minor === 1) this.#write(forwardHead(`HTTP/1.1 ${h.status} ${h.reason}`, h.fields))
        this.#rbuf = this.#rbuf.subarray(h.size)
        continue
      }
      const f = responseFraming(h, this.#method)
      if (!f.ok) return this.#badGateway()
      const req = this.#req as BodyTracker
      this.#reuse =
        this.#minor === 1 && h.minor === 1 && f.framing.kind !== 'close' && !listValues(h.fields, 'connection').includes('close')
      // A response before the whole request body arrived, or one that ends with the connection, ends the client connection too.
      if (f.framing.kind === 'close' || !req.done) this.#closeAfter = true
      const out = forwardHead(
        `HTTP/1.${this.#minor} ${h.status} ${h.reason}`,
        h.fields,
        this.#closeAfter && this.#minor === 1 ? [['connection', 'close']] : [],
      )
      const res = new BodyTracker(f.framing)
      this.#res = res
      this.#resUntilClose = f.framing.kind === 'close'
      const body = this.#rbuf.subarray(h.size)
      this.#rbuf = EMPTY
      const n = res.feed(body)
      if (res.error !== undefined) return this.#badGateway()
      if (n < body.length) this.#reuse = false
      this.#write(n === 0 ? out : Buffer.concat([out, body.subarray(0, n)]))
      if (res.done) this.#finish()
      return
    }
  }

  /**
   * Back-pressure: while the client has not taken what was written, the upstream in flight is
   * paused, and (see {@link #finish}) no next request is read, so a client that stops reading
   * gets nothing more buffered for it in the proxy, whichever exchange is in flight.
   */
  #write(b: Buffer): void {
    this.#sent = true
    if (this.#client.write(b)) return
    this.#up?.socket.pause()
    if (this.#waitingDrain) return
    this.#waitingDrain = true
    this.#client.once('drain', this.#onDrain)
  }

  readonly #onDrain = (): void => {
    this.#waitingDrain = false
    if (this.#up !== undefined) this.#up.socket.resume()
    else if (this.#nextAfterDrain) {
      this.#nextAfterDrain = false
      this.#readNext()
    }
  }

  onEnd(): void {
    // A body delimited by the connection's end (RFC 9112 section 6.3, rule 8) is complete now.
    if (this.#res !== undefined && !this.#res.done && this.#resUntilClose) {
      this.#res.done = true
      return this.#finish()
    }
    this.onClose()
  }

  onClose(): void {
    const up = this.#up
    if (up === undefined) return
    // A kept-alive connection the server closed before answering: once more on a fresh one.
    const retry = this.#retry
    if (retry !== undefined && up.reused && !this.#sent && this.#rbuf.length === 0) {
      up.handler = undefined
      up.socket.destroy()
      this.#retry = undefined
      return this.#dial(retry.key, retry.address, retry.port, retry.first, true)
    }
    if (this.#res?.done === true) return
    this.#badGateway()
  }

  #finish(): void {
    const up = this.#up as Upstream
    this.#up = undefined
    up.handler = undefined
    const req = this.#req as BodyTracker
    if (this.#reuse && req.done) this.#ctx.pool.release(up)
    else up.socket.destroy()
    this.#req = undefined
    this.#res = undefined
    this.#retry = undefined
    if (this.#closeAfter) return this.#end()
    if (this.#waitingDrain) {
      this.#nextAfterDrain = true
      return
    }
    this.#readNext()
  }

  #readNext(): void {
    this.#busy = false
    this.#client.resume()
    this.#next()
  }

  #badGateway(): void {
    const up = this.#up
    this.#up = undefined
    if (up !== undefined) {
      up.handler = undefined
      up.socket.destroy()
    }
    if (this.#sent) this.#client.destroy()
    else this.#end(BAD_GATEWAY)
  }

  #abort(): void {
    const up = this.#up
    this.#up = undefined
    if (up !== undefined) {
      up.handler = undefined
      up.socket.destroy()
    }
    this.#client.destroy()
  }

  #malformed(error: string, status: 400 | 431): void {
    this.#ctx.record(deny('url-invalid', `malformed request: ${error}`), 'request', '?')
    if (this.#up !== undefined || this.#sent) return this.#abort()
    this.#end(plain(status, status === 431 ? 'Request Header Fields Too Large' : 'Bad Request', `agent-trust sandbox proxy: ${error}\n`))
  }

  #refuse(d: Denial): void {
    this.#end(this.#ctx.refusal(d))
  }

  /** Answer (optionally) and close; whatever the client still sends is discarded. */
  #end(answer?: string): void {
    this.#closing = true
    this.#busy = true
    this.#client.resume()
    if (answer === undefined) this.#client.end()
    else this.#client.end(answer)
    setTimeout(() => this.#client.destroy(), 2000).unref()
  }

  #connect(head: RequestHead): void {
    const target = head.target
    const fail = (d: Denial): void => {
      this.#ctx.record(d, 'connect', 'CONNECT')
      this.#refuse(d)
    }
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/]+):(\d{1,5})$/.exec(target)
    if (m === null) return fail(deny('url-invalid', 'CONNECT takes host:port'))
    const { policy } = this.#ctx
    const d = policy.decideConnect('https:', m[1] as string, m[2] as string)
    if (!d.allowed) return fail(d)
    // The method inside a tunnel cannot be seen without TLS interception: only levels that may
    // use any method get tunnels (an L1 agent's GET/HEAD-only rule is kept by refusing them).
    if (egressMethods(policy.trustLevel) !== 'any')
      return fail(deny('method', 'an L1 agent may only use GET and HEAD; a tunnel would hide the method', d))
    const go = (p: Pinned): void => {
      if (this.#client.destroyed) return
      if (!p.ok) return fail(p.denial)
      this.#ctx.record(d, 'connect', 'CONNECT')
      this.#client.removeListener('data', this.#onData)
      this.#client.removeListener('end', this.#onEnd)
      this.#client.setTimeout(0)
      openTunnel(this.#client, p.address, Number(m[2]), this.#pending, this.#ctx.tunnels)
      this.#pending = EMPTY
    }
    const p = this.#ctx.pin(d, m[1] as string)
    if (p instanceof Promise) void p.then(go)
    else go(p)
  }
}
