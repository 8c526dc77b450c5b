/**
 * How the MCP bench measures one SDK on one transport: every variant of the same `echo`
 * `tools/call` in the same interleaved rounds, medians only.
 *
 * - Latency: sequential single calls, one of each variant per round (the order rotates every
 *   round), the median call per variant; "added" is a variant's median minus unguarded's.
 * - Throughput: {@link CONCURRENCY} calls in flight, one small batch of each variant per round
 *   (rotating order), the median calls/second per variant.
 *
 * The floor is `bare`: one node:crypto ES256 sign (client) and verify (server) per call and
 * no other check, where the guard sits. Each target is checked on the agent-trust placement
 * that wins its measure on this transport (latency, throughput), and both placements are printed.
 */
import { row, type Op, type Row } from './lib.js'

export const CONCURRENCY = 8
/** The guarded placements: ECDSA on the event loop (default) or on the crypto thread (`cryptoOffload`). */
export const PLACEMENTS = ['inline', 'cryptoOffload'] as const
export type Placement = (typeof PLACEMENTS)[number]
export type Variant = 'unguarded' | 'bare' | Placement | 'jose'

/** What a transport's bench needs: one op per variant (jose may be missing where the SDK has no counterpart). */
export type Ops = Record<Exclude<Variant, 'jose'>, Op> & { jose?: Op }

export const TARGETS = { addedVsBare: 1.15, throughputVsBare: 0.95 } as const

const median = (xs: readonly number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number

/** The variants present, in a fixed order. */
function variantsOf(ops: Ops): Variant[] {
  return (['unguarded', 'bare', 'inline', 'cryptoOffload', 'jose'] as const).filter((v) => ops[v] !== undefined)
}

/** Round `r`'s order: the list rotated by `r`, so no variant always runs first (or after the same one). */
function rotated<T>(xs: readonly T[], r: number): T[] {
  const k = r % xs.length
  return [...xs.slice(k), ...xs.slice(0, k)]
}

/** Median single-call latency (µs) per variant, in interleaved rounds. */
export async function latencyMedians(ops: Ops, rounds = 1200): Promise<Record<string, number>> {
  const variants = variantsOf(ops)
  const times: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v, []]))
  for (let r = 0; r < 60; r++) for (const v of variants) await ops[v]!()
  for (let r = 0; r < rounds; r++) {
    for (const v of rotated(variants, r)) {
      const t0 = process.hrtime.bigint()
      await ops[v]!()
      times[v]!.push(Number(process.hrtime.bigint() - t0) / 1000)
    }
  }
  return Object.fromEntries(variants.map((v) => [v, median(times[v]!)]))
}

/** Median calls/second per variant with {@link CONCURRENCY} in flight, in interleaved rounds of small batches. */
export async function throughputMedians(ops: Ops, rounds = 25, calls = 96): Promise<Record<string, number>> {
  const variants = variantsOf(ops)
  const rates: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v, []]))
  const run = async (op: Op): Promise<number> => {
    let left = calls
    const t0 = process.hrtime.bigint()
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (left-- > 0) await op()
      }),
    )
    return calls / (Number(process.hrtime.bigint() - t0) / 1e9)
  }
  for (const v of variants) await run(ops[v]!)
  for (let r = 0; r < rounds; r++) for (const v of rotated(variants, r)) rates[v]!.push(await run(ops[v]!))
  return Object.fromEntries(variants.map((v) => [v, median(rates[v]!)]))
}

/**
 * The rows of one SDK on one transport: added median latency of each variant vs unguarded,
 * guarded-added / bare-added (target {@link TARGETS}), throughput guarded / bare, guarded vs
 * jose on both, and which placement wins.
 */
export async function transportRows(label: string, ops: Ops, joseName: string): Promise<Row[]> {
  const lat = await latencyMedians(ops)
  const tput = await throughputMedians(ops)
  const added = (v: Variant) => (lat[v] as number) - (lat.unguarded as number)
  const name = (v: Variant) => (v === 'bare' ? 'bare node:crypto sign+verify' : v === 'jose' ? joseName : `agent-trust ${v}`)
  // Which placement wins here, per measure: a host picks one, so both are printed and each
  // target is checked on the placement that wins its measure.
  const fastest: Placement = added('inline') <= added('cryptoOffload') ? 'inline' : 'cryptoOffload'
  const busiest: Placement = (tput.inline as number) >= (tput.cryptoOffload as number) ? 'inline' : 'cryptoOffload'
  const rows: Row[] = []
  for (const v of variantsOf(ops).filter((x) => x !== 'unguarded')) {
    rows.push(
      row({
        name: `${label} added p50 latency, ${name(v)} (µs)`,
        medianUs: added(v),
        floorName: 'unguarded p50 µs',
        floorUs: lat.unguarded as number,
        ratio: (lat[v] as number) / (lat.unguarded as number),
      }),
    )
  }
  // A floor that adds nothing measurable (noise put bare at or under unguarded) cannot
  // judge a ratio: the target is then reported missed, never passed by a negative ratio.
  const floorMeasured = added('bare') > 0
  for (const p of PLACEMENTS) {
    const a = added(p) / added('bare')
    const t = (tput[p] as number) / (tput.bare as number)
    rows.push(
      row({
        name: `${label} added p50, ${name(p)}${p === fastest ? ' (wins latency)' : ''} / bare floor${floorMeasured ? '' : ' (floor not measurable in this run)'}`,
        medianUs: added(p),
        floorName: 'bare added µs',
        floorUs: added('bare'),
        ratio: a,
        ...(p === fastest ? { target: `<= ${TARGETS.addedVsBare}x`, pass: floorMeasured && a <= TARGETS.addedVsBare } : {}),
      }),
    )
    rows.push(
      row({
        name: `${label} throughput (${CONCURRENCY} in flight), ${name(p)}${p === busiest ? ' (wins throughput)' : ''} / bare floor`,
        medianUs: 1e6 / (tput[p] as number),
        floorName: 'bare µs/call',
        floorUs: 1e6 / (tput.bare as number),
        ratio: t,
        ...(p === busiest ? { target: `>= ${TARGETS.throughputVsBare}x`, pass: t >= TARGETS.throughputVsBare } : {}),
      }),
    )
  }
  rows.push(
    row({
      name: `${label} throughput (${CONCURRENCY} in flight), unguarded (µs/call)`,
      medianUs: 1e6 / (tput.unguarded as number),
      floorName: 'bare µs/call',
      floorUs: 1e6 / (tput.bare as number),
      ratio: (tput.unguarded as number) / (tput.bare as number),
    }),
  )
  if (ops.jose !== undefined) {
    rows.push(
      row({
        name: `${label} added p50, ${name(fastest)} / ${joseName}`,
        medianUs: added(fastest),
        floorName: 'jose added µs',
        floorUs: added('jose'),
        ratio: added(fastest) / added('jose'),
        target: '< 1x (beats jose)',
        pass: added(fastest) < added('jose'),
      }),
    )
    rows.push(
      row({
        name: `${label} throughput, ${name(busiest)} / ${joseName}`,
        medianUs: 1e6 / (tput[busiest] as number),
        floorName: 'jose µs/call',
        floorUs: 1e6 / (tput.jose as number),
        ratio: (tput[busiest] as number) / (tput.jose as number),
        target: '> 1x (beats jose)',
        pass: (tput[busiest] as number) > (tput.jose as number),
      }),
    )
  }
  console.log(`${label}: placement winning latency: ${fastest}; winning throughput: ${busiest}`)
  return rows
}
