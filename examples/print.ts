/** One line per decision, readable at a glance. */
export type Print = (line: string) => void

export async function attempt(print: Print, label: string, action: () => Promise<unknown>): Promise<boolean> {
  try {
    await action()
    print(`  ALLOWED  ${label}`)
    return true
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'ERR_GENERIC'
    print(`  DENIED   ${label}  [${code}]`)
    return false
  }
}

/** Tallies of the decision lines printed so far. */
export interface Tally {
  allowed: number
  denied: number
}

const DECISION = /^\s*(ALLOWED|DENIED)\s/

/**
 * A `print` that counts the `ALLOWED` / `DENIED` lines it prints, so a summary says exactly
 * what was shown above it.
 */
export function tallied(print: Print): { print: Print; tally: Tally } {
  const tally: Tally = { allowed: 0, denied: 0 }
  return {
    tally,
    print(line: string) {
      const m = DECISION.exec(line)
      if (m?.[1] === 'ALLOWED') tally.allowed++
      else if (m?.[1] === 'DENIED') tally.denied++
      print(line)
    },
  }
}

/** "10 attempts (4 allowed, 6 denied)". */
export function describeTally(t: Tally): string {
  const n = t.allowed + t.denied
  return `${n} attempt${n === 1 ? '' : 's'} (${t.allowed} allowed, ${t.denied} denied)`
}
