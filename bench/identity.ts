/**
 * A token mint through the remote authority over mTLS with keep-alive,
 * against an in-process mint, in the same run; and verification with the `cnf` (certificate
 * binding) check against without it.
 */
import { Authority, createVerifier, MemoryReplayRevocationStore } from '../src/index.js'
import { createAuthorityClient, createAuthorityService, RevocationFeed } from '../src/authority-service/index.js'
import { CertificateAuthority } from '../src/identity/index.js'
import { compare, row, type Row } from './lib.js'

const CONTEXT = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }
const SCOPE = 'db:read:documents:namespace:user-123'

export async function benchIdentity(): Promise<Row[]> {
  const manifest = {
    trustDomain: 'agent-trust.bench',
    agents: [
      { id: 'agent-summarizer-v2', trustLevel: 'L2' as const, grants: ['db:read:documents:namespace:*'] },
      { id: 'agent-database-reader', trustLevel: 'L2' as const },
    ],
  }
  const rows: Row[] = []
  const ca = await CertificateAuthority.create({ trustDomain: manifest.trustDomain })
  const authority = await Authority.create({ manifest, store: new RevocationFeed() })
  const service = await createAuthorityService({ authority, ca })
  const url = await service.listen()
  const summarizer = await ca.issueLocal({ kind: 'agent', id: 'agent-summarizer-v2' })
  const client = createAuthorityClient({ url, tls: summarizer })
  // An in-process authority of the same manifest: the floor.
  const local = await Authority.create({ manifest })
  const req = {
    subject: 'agent-summarizer-v2',
    audience: 'agent-database-reader',
    scope: [SCOPE],
    operation: 'read' as const,
    context: CONTEXT,
  }
  try {
    const remote = await compare(
      'mint via remote authority (mTLS, keep-alive)',
      () => client.mint(req),
      'in-process mint',
      () => local.mint(req),
      { batches: 11, perBatch: 60 },
    )
    rows.push({
      ...remote,
      name: `${remote.name}: ${Math.round(1e6 / remote.medianUs)} req/s sequential vs ${Math.round(1e6 / remote.floorUs)}`,
    })

    // Throughput with 16 requests in flight over the keep-alive pool (what a busy agent host sees).
    const inFlight = 16
    const total = 1600
    const t0 = process.hrtime.bigint()
    let next = 0
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next++ < total) await client.mint(req)
      }),
    )
    const us = Number(process.hrtime.bigint() - t0) / 1000 / total
    rows.push(
      row({
        name: `mint via remote authority, ${inFlight} in flight: ${Math.round(1e6 / us)} req/s`,
        medianUs: us,
        floorName: 'in-process mint (sequential)',
        floorUs: remote.floorUs,
        ratio: us / remote.floorUs,
      }),
    )

    // Verification: bound token + peer identity (step 4 compares sub and x5t#S256) vs unbound, no peer.
    const verifier = createVerifier({
      id: 'agent-database-reader',
      issuers: [local.trustedIssuer()],
      store: new MemoryReplayRevocationStore(),
      mode: 'enforce',
    })
    const thumbprint = summarizer.issued.thumbprint
    const n = 11 * 200 + 300
    const bound: string[] = []
    const unbound: string[] = []
    for (let i = 0; i < n; i++) {
      bound.push(await local.mint({ ...req, certificateThumbprint: thumbprint }))
      unbound.push(await local.mint(req))
    }
    let i = 0
    let j = 0
    const peer = { agentId: 'agent-summarizer-v2', certificateThumbprint: thumbprint }
    rows.push(
      await compare(
        'verify with cnf check (bound token, mTLS peer)',
        () => verifier.verify(bound[i++], { scope: SCOPE, operation: 'read', peer }),
        'verify without (unbound, no peer)',
        () => verifier.verify(unbound[j++], { scope: SCOPE, operation: 'read' }),
        { batches: 11, perBatch: 200, maxRatio: 1.2 },
      ),
    )
  } finally {
    await client.close()
    await service.close()
  }
  return rows
}
