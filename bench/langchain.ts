/**
 * LangChain adapter: a guarded tool's `invoke` against the same tool
 * unwrapped, in the same run, and the kernel's mint + verify for one call. The guard's added
 * median should stay within 1.2x of mint + verify: the wrapper itself is nearly free.
 */
import { tool } from '@langchain/core/tools'
import { z } from 'zod'
import { Authority, createVerifier, MemoryReplayRevocationStore } from 'agent-trust'
import { agentTrustContext, guardTool } from 'agent-trust/langchain'
import { row, type Op, type Row } from './lib.js'

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/**
 * Median µs/op of several ops measured batch by batch in rotating order, so that load from
 * other processes on a shared machine hits each alike (bench/lib.ts `compare`, for three).
 */
async function interleaved(ops: readonly Op[], batches = 201, perBatch = 20): Promise<number[]> {
  for (let i = 0; i < 100; i++) for (const op of ops) await op()
  const times: number[][] = ops.map(() => [])
  for (let b = 0; b < batches; b++) {
    for (let k = 0; k < ops.length; k++) {
      const j = (b + k) % ops.length
      const op = ops[j] as Op
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < perBatch; i++) await op()
      ;(times[j] as number[]).push(Number(process.hrtime.bigint() - t0) / 1000 / perBatch)
    }
  }
  return times.map(median)
}

export async function benchLangchain(): Promise<Row[]> {
  const toolkit = 'agent-database-reader'
  const authority = await Authority.create({
    manifest: {
      agents: [
        { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:*'] },
        {
          id: toolkit,
          trustLevel: 'L2',
          tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
        },
      ],
    },
  })
  const verifier = createVerifier({
    id: toolkit,
    issuers: [authority.trustedIssuer()],
    store: new MemoryReplayRevocationStore(),
    mode: 'enforce',
  })
  const raw = tool(async ({ namespace }) => `3 documents in ${namespace}`, {
    name: 'read_documents',
    description: 'Read the documents of a namespace',
    schema: z.object({ namespace: z.string() }),
  })
  const guarded = guardTool(raw, { authority, verifier })
  const ids = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }
  const config = { context: agentTrustContext({ agentId: 'agent-summarizer-v2', ...ids }) }
  const args = { namespace: 'user-123' }
  const requirement = { scope: 'db:read:documents:namespace:user-123', operation: 'read' as const, tool: 'read_documents', args }
  const kernel = async () => {
    const { token } = await authority.mintForTool({
      subject: 'agent-summarizer-v2',
      audience: toolkit,
      tool: 'read_documents',
      args,
      context: ids,
    })
    await verifier.verify(token, requirement)
  }

  const rawPlusKernel = async () => {
    await kernel()
    await raw.invoke(args, config)
  }
  // Four ops, one rotation: the kernel cost is taken both alone and as (unwrapped + kernel) -
  // unwrapped, so allocation and GC debt of the LangChain call weigh on both sides alike.
  const [guardedUs, rawUs, withKernelUs, kernelUs] = (await interleaved([
    () => guarded.invoke(args, config),
    () => raw.invoke(args, config),
    rawPlusKernel,
    kernel,
  ])) as [number, number, number, number]
  const added = guardedUs - rawUs
  const kernelInCall = withKernelUs - rawUs
  const ratio = added / kernelInCall
  return [
    row({ name: 'guarded tool invoke', medianUs: guardedUs, floorName: 'same tool unwrapped', floorUs: rawUs, ratio: guardedUs / rawUs }),
    row({
      name: 'kernel mintForTool + verify, alone',
      medianUs: kernelUs,
      floorName: 'same, beside the unwrapped call',
      floorUs: kernelInCall,
      ratio: kernelUs / kernelInCall,
    }),
    row({
      name: 'added by the guard (guarded - unwrapped)',
      medianUs: added,
      floorName: 'kernel mint + verify (in call)',
      floorUs: kernelInCall,
      ratio,
      target: '<= 1.2x',
      pass: ratio <= 1.2,
    }),
  ]
}
