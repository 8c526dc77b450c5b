/**
 * The sandbox's egress proxy on its own, on loopback (no namespace, no root): what a
 * kept-alive client connection, pooled upstream connections and kept DNS verdicts must never
 * let through. Destinations are local servers; the declared ones are IP literals or
 * `internal` names (loopback is an internal address class); nothing leaves this machine.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer as createHttpServer, request, Agent, type IncomingMessage, type Server } from 'node:http'
import { connect, createServer, type AddressInfo, type Server as NetServer } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemoryAuditLog } from '../../src/audit/types.js'
import { startEgressProxy, type EgressProxy, type ProxyResolver } from '../../src/sandbox/proxy.js'

interface Seen {
  method: string
  url: string
  host: string
  remotePort: number
  body: string
}
interface Dest {
  server: Server
  port: number
  seen: Seen[]
}

async function dest(): Promise<Dest> {
  const seen: Seen[] = []
  const server = createHttpServer({ keepAlive: true, keepAliveTimeout: 10_000 }, (q, s) => {
    let body = ''
    q.on('data', (d: Buffer) => (body += d.toString()))
    q.on('end', () => {
      seen.push({ method: q.method ?? '', url: q.url ?? '', host: q.headers.host ?? '', remotePort: q.socket.remotePort ?? 0, body })
      s.setHeader('content-type', 'text/plain')
      s.end(`hello ${q.method} ${q.url}`)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return { server, port: (server.address() as AddressInfo).port, seen }
}

/** Raw bytes to the proxy; everything it answers until it closes (or stays quiet for `quietMs`). */
function raw(port: number, text: string, quietMs = 400): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(text))
    let out = ''
    let timer = setTimeout(() => s.destroy(), quietMs)
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1')
      clearTimeout(timer)
      timer = setTimeout(() => s.destroy(), quietMs)
    })
    s.on('close', () => {
      clearTimeout(timer)
      resolve(out)
    })
    s.on('error', () => undefined)
  })
}

/** One request through the proxy with a Node keep-alive agent: status, body, rule, whether the client connection was reused. */
function viaProxy(
  proxy: EgressProxy,
  agent: Agent,
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; rule?: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const r = request(
      { agent, host: proxy.address, port: proxy.port, path: url, headers: { host: u.host, ...headers } },
      (res: IncomingMessage) => {
        let body = ''
        res.on('data', (d: Buffer) => (body += d.toString()))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            reused: r.reusedSocket,
            ...(typeof res.headers['x-agent-trust-rule'] === 'string' ? { rule: res.headers['x-agent-trust-rule'] } : {}),
          }),
        )
      },
    )
    r.on('error', reject)
    r.end()
  })
}

let a: Dest
let undeclared: Dest
let audit: MemoryAuditLog
let proxy: EgressProxy
let rebindAnswer = '127.0.0.1'
let lookups = 0
const resolver: ProxyResolver = async (h) => {
  lookups++
  if (h === 'rebind.test') return [{ address: rebindAnswer }]
  if (h === 'a.test' || h === 'b.test') return [{ address: '127.0.0.1' }]
  throw new Error('ENOTFOUND')
}

beforeAll(async () => {
  a = await dest()
  undeclared = await dest()
  audit = new MemoryAuditLog()
  proxy = await startEgressProxy({
    agentId: 'agent-proxy-test',
    trustLevel: 'L2',
    egress: [
      `http://127.0.0.1:${a.port}`,
      `http://a.test:${a.port} internal`,
      `http://b.test:${a.port} internal`,
      `http://rebind.test:${a.port} internal`,
    ],
    audit,
    host: '127.0.0.1',
    resolver,
    dnsTtlMs: 300,
  })
})

afterAll(async () => {
  await proxy?.close()
  a?.server.close()
  undeclared?.server.close()
})

/** A local server on a free port, and a proxy whose agent declares exactly that server. */
async function proxyInFrontOf(server: Server | NetServer, scheme: 'http' | 'https' = 'http'): Promise<{ p: EgressProxy; port: number }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  const p = await startEgressProxy({
    agentId: 'agent-proxy-test',
    trustLevel: 'L2',
    egress: [`${scheme}://127.0.0.1:${port}`],
    audit,
    host: '127.0.0.1',
  })
  return { p, port }
}

const get = (target: string, host: string, extra = '') => `GET ${target} HTTP/1.1\r\nhost: ${host}\r\n${extra}\r\n`

describe('a kept-alive client connection', () => {
  it('a second request, pipelined in the same write, to an undeclared destination is refused; the undeclared server sees nothing', async () => {
    const before = audit.events.length
    const A = `127.0.0.1:${a.port}`
    const U = `127.0.0.1:${undeclared.port}`
    const out = await raw(proxy.port, get(`http://${A}/one`, A) + get(`http://${U}/two`, U))
    expect(out).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*hello GET \/one/)
    expect(out).toContain('HTTP/1.1 403 Forbidden')
    expect(out).toContain('x-agent-trust-rule: ip-literal')
    expect(undeclared.seen).toHaveLength(0)
    const events = audit.events.slice(before)
    expect(events.map((e) => [e.decision, e.note])).toEqual([
      ['allow', 'proxy request GET'],
      ['deny', 'proxy request GET rule=ip-literal'],
    ])
  })

  it('a second request on a reused client connection (Node keep-alive agent) is decided again', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const first = await viaProxy(proxy, agent, `http://127.0.0.1:${a.port}/first`)
      const second = await viaProxy(proxy, agent, `http://127.0.0.1:${undeclared.port}/second`)
      expect(first.status).toBe(200)
      expect(second).toMatchObject({ status: 403, rule: 'ip-literal', reused: true })
      expect(undeclared.seen).toHaveLength(0)
    } finally {
      agent.destroy()
    }
  })

  it('a request hidden in a chunked body is body, not a request; the real next request is decided', async () => {
    const A = `127.0.0.1:${a.port}`
    const U = `127.0.0.1:${undeclared.port}`
    const hidden = get(`http://${U}/hidden`, U)
    const chunked = `POST http://${A}/upload HTTP/1.1\r\nhost: ${A}\r\ntransfer-encoding: chunked\r\n\r\n${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`
    const out = await raw(proxy.port, chunked + get(`http://${U}/after`, U))
    expect(out).toContain('hello POST /upload')
    expect(out).toContain('x-agent-trust-rule: ip-literal')
    expect(a.seen.find((s) => s.url === '/upload')?.body).toBe(hidden)
    expect(undeclared.seen).toHaveLength(0)
  })

  it("the Host header a client wrote is replaced by the request-target's (RFC 9112 section 3.2.2): it never picks another host", async () => {
    const A = `127.0.0.1:${a.port}`
    for (const text of [
      get(`http://${A}/front`, 'evil.example'),
      get(`http://${A}/front`, `127.0.0.1:${undeclared.port}`),
      get(`http://${A}/front`, A, `host: evil.example\r\n`),
      `GET http://${A}/front HTTP/1.1\r\n\r\n`,
    ]) {
      const n = a.seen.length
      expect(await raw(proxy.port, text)).toContain('hello GET /front')
      expect(a.seen.slice(n).map((s) => s.host)).toEqual([A])
    }
    expect(undeclared.seen).toHaveLength(0)
  })

  it('framing a lenient and a strict parser could read differently is refused with 400, and audited', async () => {
    const A = `127.0.0.1:${a.port}`
    const n = a.seen.length
    const before = audit.events.length
    const shapes = [
      `POST http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
      `POST http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
      `POST http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde`,
      `POST http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ncontent-length : 4\r\n\r\nabcd`,
      `GET http://${A}/s HTTP/1.1\r\nhost: ${A}\r\nx-a: 1\r\n x-folded: 2\r\n\r\n`,
      `GET http://${A}/s HTTP/1.1\nhost: ${A}\r\n\r\n`,
      `POST http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n`,
      // The body framed by a field the request names hop-by-hop: forwarded without it, the
      // body would reach the server as a second, undecided request.
      `GET http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ncontent-length: 41\r\nconnection: content-length\r\n\r\nPOST /smuggled HTTP/1.1\r\nhost: other\r\n\r\n`,
      `POST http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ntransfer-encoding: chunked\r\nconnection: transfer-encoding\r\n\r\n0\r\n\r\n`,
      `POST http://${A}/s HTTP/1.1\r\nhost: ${A}\r\ntransfer-encoding: \r\ncontent-length: 0\r\n\r\n`,
    ]
    for (const text of shapes) expect(await raw(proxy.port, text)).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(a.seen.slice(n).filter((s) => s.url === '/s' || s.url === '/smuggled')).toHaveLength(0)
    // Each refused and audited (the last one after its head was allowed: its body framing fails).
    const denied = audit.events.slice(before).filter((e) => e.decision === 'deny')
    expect(denied).toHaveLength(shapes.length)
    expect(denied.every((e) => e.note === 'proxy request rule=url-invalid')).toBe(true)
  })
})

describe('pooled upstream connections', () => {
  it('are reused for the same destination and never for another one on the same address and port', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const n = a.seen.length
      for (const [host, path] of [
        ['a.test', '/pa1'],
        ['a.test', '/pa2'],
        ['b.test', '/pb1'],
        ['a.test', '/pa3'],
        ['b.test', '/pb2'],
      ])
        expect((await viaProxy(proxy, agent, `http://${host}:${a.port}${path}`)).status).toBe(200)
      const port = (url: string) => a.seen.slice(n).find((s) => s.url === url)?.remotePort
      expect(port('/pa2')).toBe(port('/pa1'))
      expect(port('/pa3')).toBe(port('/pa1'))
      expect(port('/pb2')).toBe(port('/pb1'))
      expect(port('/pb1')).not.toBe(port('/pa1'))
      expect(a.seen.find((s) => s.url === '/pb1')?.host).toBe(`b.test:${a.port}`)
    } finally {
      agent.destroy()
    }
  })

  it('an upstream answering more bytes than its framing says is not kept: the extra bytes never answer a later request', async () => {
    let connections = 0
    const forged = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged'
    const liar: NetServer = createServer((c) => {
      connections++
      c.on('data', () => c.write(`HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok${forged}`))
      c.on('error', () => undefined)
    })
    const { p, port } = await proxyInFrontOf(liar, 'http')
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const one = await viaProxy(p, agent, `http://127.0.0.1:${port}/1`)
      const two = await viaProxy(p, agent, `http://127.0.0.1:${port}/2`)
      expect([one.body, two.body]).toEqual(['ok', 'ok'])
      expect(connections).toBe(2)
    } finally {
      agent.destroy()
      await p.close()
      liar.close()
    }
  })
})

describe('an upstream whose framing could be read two ways', () => {
  it('is answered 502 when its Connection header names a framing field', async () => {
    const smuggler: NetServer = createServer((c) => {
      c.on('data', () => c.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: content-length\r\n\r\nok'))
      c.on('error', () => undefined)
    })
    const { p, port } = await proxyInFrontOf(smuggler, 'http')
    try {
      const U = `127.0.0.1:${port}`
      expect(await raw(p.port, get(`http://${U}/x`, U))).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n/)
    } finally {
      await p.close()
      smuggler.close()
    }
  })
})

describe('connections one agent can hold open', () => {
  it('are capped: past the cap a new connection is closed at once, and one is served again when another goes', async () => {
    const p = await startEgressProxy({
      agentId: 'agent-proxy-test',
      trustLevel: 'L2',
      egress: [`http://127.0.0.1:${a.port}`],
      audit,
      host: '127.0.0.1',
      maxConnections: 4,
    })
    const open: ReturnType<typeof connect>[] = []
    try {
      // Four clients each hold a partial request head (bytes the proxy keeps until the head ends).
      for (let i = 0; i < 4; i++) {
        const c = connect(p.port, '127.0.0.1')
        c.on('error', () => undefined)
        await new Promise<void>((r) => c.once('connect', () => r()))
        c.write('GET http://127.0.0.1/ HTTP/1.1\r\nx-slow: ')
        open.push(c)
      }
      await new Promise((r) => setTimeout(r, 100))
      const A = `127.0.0.1:${a.port}`
      expect(await raw(p.port, get(`http://${A}/over`, A))).toBe('')
      open.shift()!.destroy()
      await new Promise((r) => setTimeout(r, 100))
      expect(await raw(p.port, get(`http://${A}/again`, A))).toContain('hello GET /again')
    } finally {
      for (const c of open) c.destroy()
      await p.close()
    }
  })
})

describe('a client that stops reading', () => {
  it('gets nothing more buffered for it: the next pipelined answer is not fetched until it drains', async () => {
    // Small answers fill the client's socket buffers; one of them ends in the write that
    // fills them. A pipelined huge answer after them must then wait, not stream into the proxy.
    const small = Buffer.alloc(8 * 1024, 'x')
    const chunk = Buffer.alloc(1024 * 1024, 'y')
    const HUGE = 256
    let hugeSent = 0
    const origin = createHttpServer((q, s) => {
      if (q.url !== '/huge') return s.end(small)
      s.setHeader('content-length', String(HUGE * chunk.length))
      const more = (): void => {
        while (hugeSent < HUGE * chunk.length) {
          hugeSent += chunk.length
          if (!s.write(chunk)) return void s.once('drain', more)
        }
        s.end()
      }
      more()
    })
    const { p, port } = await proxyInFrontOf(origin, 'http')
    const U = `127.0.0.1:${port}`
    const client = connect(p.port, '127.0.0.1')
    try {
      await new Promise<void>((r) => client.once('connect', () => r()))
      client.pause() // never reads
      let text = ''
      for (let i = 0; i < 2000; i++) text += get(`http://${U}/small${i}`, U)
      client.write(text + get(`http://${U}/huge`, U))
      await new Promise((r) => setTimeout(r, 2500))
      // Kernel buffers and the proxy's bounded buffers hold a few MiB at most; an unbounded proxy reads all 256.
      expect(hugeSent).toBeLessThan(48 * chunk.length)
    } finally {
      client.destroy()
      await p.close()
      origin.close()
    }
  }, 15_000)
})

describe('kept DNS verdicts', () => {
  it('a name is resolved once per TTL, dialled at the checked address, and decided again when the TTL ends (a rebind to metadata is refused)', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      rebindAnswer = '127.0.0.1'
      const start = lookups
      expect((await viaProxy(proxy, agent, `http://rebind.test:${a.port}/r1`)).status).toBe(200)
      rebindAnswer = '169.254.169.254'
      // Within the TTL: the kept verdict, and the address it checked.
      expect((await viaProxy(proxy, agent, `http://rebind.test:${a.port}/r2`)).status).toBe(200)
      expect(lookups - start).toBe(1)
      await new Promise((r) => setTimeout(r, 350))
      const after = await viaProxy(proxy, agent, `http://rebind.test:${a.port}/r3`)
      expect(after).toMatchObject({ status: 403, rule: 'address' })
      expect(lookups - start).toBe(2)
      expect(a.seen.some((s) => s.url === '/r3')).toBe(false)
      expect(audit.events.at(-1)).toMatchObject({ decision: 'deny', note: 'proxy connect GET rule=address class=metadata' })
    } finally {
      agent.destroy()
      rebindAnswer = '127.0.0.1'
    }
  })

  it('a failed lookup is not kept', async () => {
    const p = await startEgressProxy({
      agentId: 'agent-proxy-test',
      trustLevel: 'L2',
      egress: [`http://flaky.test:${a.port} internal`],
      audit,
      host: '127.0.0.1',
      dnsTtlMs: 60_000,
      resolver: (() => {
        let calls = 0
        return async () => (++calls === 1 ? Promise.reject(new Error('ETIMEOUT')) : [{ address: '127.0.0.1' }])
      })(),
    })
    const agent = new Agent({ keepAlive: false })
    try {
      expect(await viaProxy(p, agent, `http://flaky.test:${a.port}/f1`)).toMatchObject({ status: 403, rule: 'resolve-failed' })
      expect((await viaProxy(p, agent, `http://flaky.test:${a.port}/f2`)).status).toBe(200)
    } finally {
      agent.destroy()
      await p.close()
    }
  })
})

describe('CONNECT tunnels', () => {
  it('relay every byte unchanged both ways, with a slow reader (flow control) and a fast one', async () => {
    const down = randomBytes(8 * 1024 * 1024 + 123)
    const server: NetServer = createServer((c) => {
      const h = createHash('sha256')
      let up = 0
      c.on('data', (d: Buffer) => {
        h.update(d)
        up += d.length
        if (up === 3 * 1024 * 1024 + 7) c.end(Buffer.concat([Buffer.from(`${h.digest('hex')}\n`), down]))
      })
      c.on('error', () => undefined)
    })
    const { p, port } = await proxyInFrontOf(server, 'https')
    try {
      for (const slow of [true, false]) {
        const upload = randomBytes(3 * 1024 * 1024 + 7)
        const got = await new Promise<Buffer>((resolve, reject) => {
          const r = request({ host: p.address, port: p.port, method: 'CONNECT', path: `127.0.0.1:${port}` })
          r.on('connect', (res, socket) => {
            if (res.statusCode !== 200) return reject(new Error(`CONNECT ${res.statusCode}`))
            const parts: Buffer[] = []
            socket.on('data', (d: Buffer) => {
              parts.push(d)
              if (slow && parts.length % 8 === 0) {
                socket.pause()
                setTimeout(() => socket.resume(), 5)
              }
            })
            socket.on('end', () => resolve(Buffer.concat(parts)))
            socket.on('error', reject)
            socket.write(upload)
          })
          r.on('error', reject)
          r.end()
        })
        const nl = got.indexOf(10)
        expect(got.subarray(0, nl).toString()).toBe(createHash('sha256').update(upload).digest('hex'))
        expect(
          createHash('sha256')
            .update(got.subarray(nl + 1))
            .digest('hex'),
        ).toBe(createHash('sha256').update(down).digest('hex'))
      }
    } finally {
      await p.close()
      server.close()
    }
  })
})

describe('a client that half-closes', () => {
  it('still gets the answer to the request it sent before its FIN', async () => {
    const A = `127.0.0.1:${a.port}`
    const out = await new Promise<string>((resolve) => {
      const s = connect(proxy.port, '127.0.0.1', () => s.end(get(`http://${A}/half`, A)))
      let b = ''
      s.on('data', (d: Buffer) => (b += d.toString()))
      s.on('close', () => resolve(b))
    })
    expect(out).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(out).toContain('hello GET /half')
  })
})
