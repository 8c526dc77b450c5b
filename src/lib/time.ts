/** Epoch seconds, from `Date.now()` so that tests can freeze time with `vi.setSystemTime`. */
export function nowSeconds(nowMs: number = Date.now()): number {
  return Math.floor(nowMs / 1000)
}
