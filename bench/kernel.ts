/** Kernel hot paths against raw node:crypto ECDSA P-256. */
import { sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
import { Authority, createVerifier, MemoryReplayRevocationStore } from '../src/index.js'
import { compare, type Row } from './lib.js'

export async function benchKernel(): Promise<Row[]> {
  const authority = await Authority.create({
    manifest: {
      agents: [
        { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:*'] },
        { id: 'agent-database-reader', trustLevel: 'L2' },
      ],
    },
  })
  const verifier = createVerifier({
    id: 'agent-database-reader',
    issuers: [authority.trustedIssuer()],
    store: new MemoryReplayRevocationStore(),
    mode: 'enforce',
  })
  const context = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }
  const scope = 'db:read:documents:namespace:user-123'
  const mintReq = { subject: 'agent-summarizer-v2', audience: 'agent-database-reader', scope: [scope], operation: 'read' as const, context }
  const sample = await authority.mint(mintReq)
  const signingInput = Buffer.from(sample.slice(0, sample.lastIndexOf('.')), 'latin1')
  const signature = Buffer.from(sample.slice(sample.lastIndexOf('.') + 1), 'base64url')
  const { privateKey } = authority.keys.active()
  const publicKey = (await import('node:crypto')).createPublicKey(privateKey)
  const signFloor = () => cryptoSign('sha256', signingInput, { key: privateKey, dsaEncoding: 'ieee-p1363' })
  const verifyFloor = () => cryptoVerify('sha256', signingInput, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)

  const rows: Row[] = []
  rows.push(await compare('mint (authority, one token)', () => authority.mint(mintReq), 'node:crypto.sign', signFloor, { maxRatio: 2 }))

  // Verify needs a fresh token per call (single use): pre-mint a pool outside the timing.
  const pool: string[] = []
  const refill = async (n: number) => {
    for (let i = 0; i < n; i++) pool.push(await authority.mint(mintReq))
  }
  await refill(21 * 200 + 300)
  let next = 0
  const requirement = { scope, operation: 'read' as const }
  rows.push(
    await compare('verify', () => verifier.verify(pool[next++], requirement), 'node:crypto.verify', verifyFloor, {
      maxRatio: 1.5,
    }),
  )
  return rows
}
