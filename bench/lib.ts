/**
 * Bench helpers: interleave the floor and the path under test batch by batch (so machine
 * noise hits both alike), report medians of per-operation times and their ratio.
 */
export interface Row {
  readonly name: string
  readonly medianUs: number
  readonly floorName: string
  readonly floorUs: number
  readonly ratio: number
  readonly target?: string
  readonly pass?: boolean
}

export type Op = () => unknown | Promise<unknown>

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

async function batchUs(op: Op, n: number): Promise<number> {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await op()
  return Number(process.hrtime.bigint() - t0) / 1000 / n
}

/** Effective microseconds per op with `concurrency` calls in flight (1 / throughput). */
export async function inFlightUs(op: Op, n: number, concurrency: number): Promise<number> {
  let left = n
  const t0 = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left > 0) {
        left--
        await op()
      }
    }),
  )
  return Number(process.hrtime.bigint() - t0) / 1000 / n
}

/**
 * Medians of interleaved in-flight batches of each op (order reversed every other batch so
 * that no op always runs after the same neighbour), after one warm-up batch each.
 */
export async function inFlightMedians(
  ops: readonly Op[],
  options: { batch: number; batches: number; concurrency: number },
): Promise<number[]> {
  const { batch, batches, concurrency } = options
  for (const op of ops) await inFlightUs(op, batch, concurrency)
  const runs: number[][] = ops.map(() => [])
  for (let i = 0; i < batches; i++) {
    const order = i % 2 === 0 ? ops.map((_, k) => k) : ops.map((_, k) => ops.length - 1 - k)
    for (const k of order) runs[k]!.push(await inFlightUs(ops[k]!, batch, concurrency))
  }
  return runs.map(median)
}

/** Median microseconds per op of `op` and of `floor`, interleaved. */
export async function compare(
  name: string,
  op: Op,
  floorName: string,
  floor: Op,
  options: { batches?: number; perBatch?: number; maxRatio?: number } = {},
): Promise<Row> {
  const { batches = 21, perBatch = 200, maxRatio } = options
  for (let i = 0; i < Math.min(perBatch, 100); i++) {
    await op()
    await floor()
  }
  const a: number[] = []
  const b: number[] = []
  for (let i = 0; i < batches; i++) {
    if (i % 2 === 0) {
      a.push(await batchUs(op, perBatch))
      b.push(await batchUs(floor, perBatch))
    } else {
      b.push(await batchUs(floor, perBatch))
      a.push(await batchUs(op, perBatch))
    }
  }
  const medianUs = median(a)
  const floorUs = median(b)
  const ratio = medianUs / floorUs
  return {
    name,
    medianUs,
    floorName,
    floorUs,
    ratio,
    ...(maxRatio === undefined ? {} : { target: `<= ${maxRatio}x`, pass: ratio <= maxRatio }),
  }
}

/** A row computed elsewhere (throughput ratios, added latency). */
export function row(r: Row): Row {
  return r
}

export function printRows(title: string, rows: readonly Row[]): void {
  console.log(`\n## ${title}`)
  console.log('| path | median µs/op | floor | floor µs/op | ratio | target | |')
  console.log('|---|---:|---|---:|---:|---|---|')
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.medianUs.toFixed(1)} | ${r.floorName} | ${r.floorUs.toFixed(1)} | ${r.ratio.toFixed(2)}x | ${r.target ?? ''} | ${r.pass === undefined ? '' : r.pass ? 'ok' : 'MISSED'} |`,
    )
  }
}
