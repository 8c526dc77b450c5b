/**
 * The sandbox's egress proxy: an HTTP forward proxy (absolute-form requests, RFC 9112
 * section 3.2.2, and `CONNECT` tunnels, RFC 9110 section 9.3.6; no TLS interception) that
 * decides every request with the in-process guard's own {@link EgressPolicy}: destination
 * parsing and matching, trust-level method rules, resolved-address classes. It connects to
 * exactly the address it checked (DNS pinning), and audits every decision in the same event
 * shape as the guard.
 *
 * - Every request on a kept-alive client connection is decided on its own; upstream
 *   connections are kept alive per checked destination (origin and pinned address).
 * - The client's `Host` header is replaced by the request-target's (RFC 9112 section 3.2.2).
 * - `CONNECT host:port` is decided as an `https://host:port` destination. The proxy never
 *   terminates TLS, so it cannot see the method inside a tunnel: agents whose level limits
 *   methods (L1: GET and HEAD only) get no tunnels at all (rule `method`); L2 and above do.
 * - Redirects are never followed by the proxy: a 3xx answer goes back to the client, and the
 *   request for the next hop is a new request, decided (and audited) on its own.
 * - Every refusal is a 403 with `x-agent-trust-rule: <rule>` and a JSON body
 *   `{"error":{"code":"ERR_EGRESS_DENIED","message":...,"rule":...}}`, for CONNECT too.
 */
import { lookup } from 'node:dns/promises'
import { STATUS_CODES } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import type { AuditLog } from '../audit/types.js'
import { egressDecided } from '../audit/events.js'
import { egressDenied, EgressPolicy, type Denial, type EgressDecision } from '../egress/policy.js'
import { denialAnswer } from '../http/denial.js'
import type { TrustLevel } from '../policy/trust.js'
import { ClientConnection } from './connection.js'
import { createPinner, DEFAULT_DNS_TTL_MS, type ProxyResolver } from './pin.js'
import { UpstreamPool } from './upstream.js'

export type { ProxyResolver } from './pin.js'

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
  /** How long a name's checked addresses are kept, in ms (default 5000; 0 resolves for every request). */
  readonly dnsTtlMs?: number
  /** Client connections open at once (default {@link MAX_CLIENT_CONNECTIONS}); more are closed as they arrive. */
  readonly maxConnections?: number
}

/**
 * Client connections one proxy keeps open at once. Each may hold up to a request head's worth
 * of unparsed bytes (64 KiB), so this bounds what one sandboxed agent can make the host's
 * proxy hold (64 MiB) however many connections it opens; far above what one agent's HTTP
 * clients use (a browser opens about 6 per host).
 */
export const MAX_CLIENT_CONNECTIONS = 1024

export interface EgressProxy {
  readonly address: string
  readonly port: number
  close(): Promise<void>
}

const systemResolver: ProxyResolver = (h) => lookup(h, { all: true, verbatim: true })

/** Start the proxy; resolves once it listens. */
export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  const policy = new EgressPolicy({ egress: options.egress, trustLevel: options.trustLevel })
  const { agentId, audit } = options

  const record = (d: EgressDecision, stage: string, method: string): void => {
    audit.record(egressDecided(d, { agentId, trustLevel: options.trustLevel, enforced: true, stage, method, via: 'proxy' }))
  }

  /** The refusal every route gets: 403, the rule in `x-agent-trust-rule`, a JSON body with code, message and rule. */
  const refusal = (d: Denial): string => {
    const err = egressDenied(d, agentId)
    const body = JSON.stringify({ error: { code: err.code, message: err.message, rule: d.rule } })
    const answer = denialAnswer(err, { body })
    const fields = Object.entries({
      ...answer.headers,
      'x-agent-trust-rule': d.rule,
      connection: 'close',
      'content-length': String(Buffer.byteLength(answer.body)),
    })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')
    return `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Forbidden'}\r\n${fields}\r\n${answer.body}`
  }

  const tunnels = new Set<Socket>()
  const clients = new Set<Socket>()
  const pool = new UpstreamPool()
  const ctx = {
    policy,
    pin: createPinner(policy, options.resolver ?? systemResolver, options.dnsTtlMs ?? DEFAULT_DNS_TTL_MS),
    record,
    refusal,
    pool,
    tunnels,
  }
  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    clients.add(socket)
    socket.on('close', () => clients.delete(socket))
    new ClientConnection(socket, ctx)
  })
  server.maxConnections = options.maxConnections ?? MAX_CLIENT_CONNECTIONS
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
        for (const c of clients) c.destroy()
        pool.destroy()
      }),
  }
}
