/**
 * The sandbox's egress proxy: an HTTP forward proxy (absolute-form requests, RFC 9112
 * section 3.2.2, and `CONNECT` tunnels, RFC 9110 section 9.3.6; no TLS interception) that
 * decides every request with the in-process guard's own {@link EgressPolicy}: destination
 * parsing and matching, trust-level method rules, resolved-address classes. It connects to
 * exactly the address it checked (DNS pinning), and audits every decision in the same event
 * shape as the guard.
 *
 * - `CONNECT host:port` is decided as an `https://host:port` destination. The proxy never
 *   terminates TLS, so it cannot see the method inside a tunnel: agents whose level limits
 *   methods (L1: GET and HEAD only) get no tunnels at all (rule `method`); L2 and above do.
 * - Redirects are never followed by the proxy: a 3xx answer goes back to the client, and the
 *   request for the next hop is a new request, decided (and audited) on its own.
 * - Every refusal is a 403 with `x-agent-trust-rule: <rule>` and a JSON body
 *   `{"error":{"code":"ERR_EGRESS_DENIED","message":...,"rule":...}}`, for CONNECT too.
 */
import { lookup } from 'node:dns/promises'
import {
  Agent as HttpAgent,
  createServer,
  request as httpRequest,
  STATUS_CODES,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { connect, isIP, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { AuditLog } from '../audit/types.js'
import { egressDenied, EgressPolicy, type Allowance, type Denial, type EgressDecision } from '../egress/policy.js'
import { denialAnswer } from '../http/denial.js'
import { egressMethods, type TrustLevel } from '../policy/trust.js'
import { egressDecided } from '../audit/events.js'

export type ProxyResolver = (hostname: string) => Promise<ReadonlyArray<{ address: string }>>

export interface EgressProxyOptions {
  readonly agentId: string
  readonly egress: readonly string[]
  readonly trustLevel: TrustLevel
  readonly audit: AuditLog
  /** Address to listen on (the host side of the sandbox's veth). */
  readonly host: string
  readonly port?: number
  /** Name resolution (default: the system resolver, all addresses). */
  readonly resolver?: ProxyResolver
}

export interface EgressProxy {
  readonly address: string
  readonly port: number
  close(): Promise<void>
}

const systemResolver: ProxyResolver = (h) => lookup(h, { all: true, verbatim: true })
// Hop-by-hop fields (RFC 9110 section 7.6.1) and the proxy's own.
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
])

/** Start the proxy; resolves once it listens. */
export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  const policy = new EgressPolicy({ egress: options.egress, trustLevel: options.trustLevel })
  const resolver = options.resolver ?? systemResolver
  const { agentId, audit } = options

  const record = (d: EgressDecision, stage: string, method: string): void => {
    audit.record(egressDecided(d, { agentId, trustLevel: options.trustLevel, enforced: true, stage, method, via: 'proxy' }))
  }

  /** Resolve (unless literal) and check every address; the first passing address is the one dialled. */
  const pin = async (a: Allowance, hostname: string): Promise<{ ok: true; address: string } | { ok: false; denial: Denial }> => {
    const bare = hostname.replace(/^\[|\]$/g, '')
    if (a.literal || isIP(bare) !== 0) return { ok: true, address: bare }
    let addresses: string[]
    try {
      addresses = (await resolver(bare)).map((r) => String(r.address))
    } catch {
      addresses = []
    }
    const d = policy.decideAddresses(a, addresses)
    if (!d.allowed) return { ok: false, denial: d }
    return { ok: true, address: addresses[0] as string }
  }

  /** The refusal every route gets: 403, the rule in `x-agent-trust-rule`, a JSON body with code, message and rule. */
  const refusal = (d: Denial) => {
    const err = egressDenied(d, agentId)
    const answer = denialAnswer(err, {
      body: JSON.stringify({ error: { code: err.code, message: err.message, rule: d.rule } }),
    })
    return { status: answer.status, headers: { ...answer.headers, 'x-agent-trust-rule': d.rule, connection: 'close' }, body: answer.body }
  }
  const refuse = (res: ServerResponse, d: Denial): void => {
    const r = refusal(d)
    res.writeHead(r.status, r.headers)
    res.end(r.body)
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const method = req.method ?? ''
    const target = req.url ?? ''
    // Only absolute-form reaches the outside; an origin-form request is for the proxy itself.
    let d = /^https?:\/\//i.test(target)
      ? policy.decideUrl(target, method)
      : ({ allowed: false, rule: 'url-invalid', reason: 'a proxy request must be absolute-form (http://host/path)' } as Denial)
    if (d.allowed && target.toLowerCase().startsWith('https:'))
      d = { allowed: false, rule: 'scheme', reason: 'https goes through CONNECT', host: d.host, origin: d.origin }
    if (!d.allowed) {
      record(d, 'request', method)
      req.resume()
      return refuse(res, d)
    }
    const allowance = d
    const url = new URL(target)
    void pin(allowance, url.hostname).then((p) => {
      if (!p.ok) {
        record(p.denial, 'connect', method)
        req.resume()
        return refuse(res, p.denial)
      }
      record(allowance, 'request', method)
      const headers: Record<string, string | string[]> = {}
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v
      headers.host = url.host
      const up = httpRequest({
        host: p.address,
        port: url.port === '' ? 80 : Number(url.port),
        method,
        path: `${url.pathname}${url.search}`,
        headers,
        setHost: false,
        agent: upstream,
      })
      up.on('response', (r) => {
        const out: Record<string, string | string[]> = {}
        for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v
        res.writeHead(r.statusCode ?? 502, out)
        r.pipe(res)
      })
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' })
        res.end('agent-trust sandbox proxy: the upstream did not answer\n')
      })
      req.pipe(up)
    })
  }

  const onConnect = (req: IncomingMessage, client: Duplex, head: Buffer): void => {
    const target = req.url ?? ''
    const fail = (d: Denial): void => {
      record(d, 'connect', 'CONNECT')
      const r = refusal(d)
      const fields = Object.entries({ ...r.headers, 'content-length': String(Buffer.byteLength(r.body)) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')
      client.end(`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? 'Forbidden'}\r\n${fields}\r\n${r.body}`)
    }
    client.on('error', () => undefined)
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/]+):(\d{1,5})$/.exec(target)
    if (m === null) return fail({ allowed: false, rule: 'url-invalid', reason: 'CONNECT takes host:port' })
    const d = policy.decideConnect('https:', m[1] as string, m[2] as string)
    if (!d.allowed) return fail(d)
    // The method inside a tunnel cannot be seen without TLS interception: only levels that may
    // use any method get tunnels (an L1 agent's GET/HEAD-only rule is kept by refusing them).
    if (egressMethods(policy.trustLevel) !== 'any')
      return fail({
        allowed: false,
        rule: 'method',
        reason: 'an L1 agent may only use GET and HEAD; a tunnel would hide the method',
        host: d.host,
        origin: d.origin,
      })
    void pin(d, m[1] as string).then((p) => {
      if (!p.ok) return fail(p.denial)
      record(d, 'connect', 'CONNECT')
      const up: Socket = connect({ host: p.address, port: Number(m[2]) })
      tunnels.add(client)
      client.on('close', () => tunnels.delete(client))
      up.on('connect', () => {
        up.setNoDelay(true)
        ;(client as Socket).setNoDelay?.(true)
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        if (head.length > 0) up.write(head)
        up.pipe(client)
        client.pipe(up)
      })
      up.on('error', () => client.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\n'))
      client.on('close', () => up.destroy())
    })
  }

  const tunnels = new Set<Duplex>()
  // Upstream connections are kept alive per pinned address and port (the key of Node's agent).
  const upstream = new HttpAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 })
  const server: Server = createServer({ keepAlive: true }, onRequest)
  server.on('connect', onConnect)
  server.on('clientError', (_e, socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, options.host, () => resolve())
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    address: options.host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
        for (const t of tunnels) t.destroy()
        upstream.destroy()
      }),
  }
}
