/**
 * Egress guard throughput: requests per second to a loopback server
 * through the guarded dispatcher against a plain undici `Agent`, same run, interleaved.
 * Each op is a batch of concurrent keep-alive requests, so the ratio is a throughput ratio.
 * The loopback server is declared as an IP-literal destination (it is internal by nature).
 * Target: >= 0.95x the plain Agent's requests per second (<= 1.053x the time per batch).
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent, request, type Dispatcher } from 'undici'
import { createEgressAgent } from 'agent-trust/egress'
import { compare, type Row } from './lib.js'

const CONCURRENCY = 8

export async function benchEgress(): Promise<Row[]> {
  const body = JSON.stringify({ documents: ['q3-report.pdf'] })
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const url = `http://127.0.0.1:${port}/documents?namespace=user-123`

  const plain = new Agent({ connections: CONCURRENCY })
  const guarded = createEgressAgent({
    agentId: 'agent-summarizer-v2',
    trustLevel: 'L2',
    egress: [`http://127.0.0.1:${port}`],
    mode: 'enforce',
    agentOptions: { connections: CONCURRENCY },
  })

  const one = async (dispatcher: Dispatcher) => {
    const r = await request(url, { dispatcher })
    await r.body.text()
  }
  const batch = (dispatcher: Dispatcher) => () => Promise.all(Array.from({ length: CONCURRENCY }, () => one(dispatcher)))

  try {
    const r = await compare('egress guard: batch of 8 keep-alive requests', batch(guarded), 'plain undici Agent', batch(plain), {
      // Many short batches, interleaved: load from other processes hits both paths alike.
      batches: 121,
      perBatch: 10,
      maxRatio: 1 / 0.95,
    })
    const rps = (CONCURRENCY * 1e6) / r.medianUs
    const floorRps = (CONCURRENCY * 1e6) / r.floorUs
    return [
      {
        ...r,
        name: `egress guard: ${Math.round(rps)} req/s vs ${Math.round(floorRps)} req/s plain (${(floorRps === 0 ? 0 : rps / floorRps).toFixed(3)}x)`,
        target: '>= 0.95x req/s',
      },
    ]
  } finally {
    await Promise.all([plain.close(), guarded.close()])
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
