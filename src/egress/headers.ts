/**
 * undici accepts request headers in several shapes: an object, a flat `[name, value, ...]`
 * array (strings or Buffers), an array of `[name, value]` pairs, or any iterable of pairs
 * (`Headers`, `Map`). Guards must read and rewrite all of them the same way, or a header
 * hides in the shape nobody checked.
 */

export type HeaderValue = string | string[] | Buffer | readonly (string | Buffer)[]
export type FlatHeaders = string[]

function str(v: unknown): string {
  if (typeof v === 'string') return v
  if (Buffer.isBuffer(v)) return v.toString('latin1')
  return String(v)
}

function push(out: Array<[string, string]>, k: unknown, v: unknown): void {
  if (v === undefined || v === null) return
  const name = str(k).toLowerCase()
  // An array value is several header lines of the same name (undici sends one per value).
  if (Array.isArray(v)) for (const x of v) out.push([name, str(x)])
  else out.push([name, str(v)])
}

/** Every `[lowercase name, value]` pair, one per header line. */
export function headerPairs(headers: unknown): Array<[string, string]> {
  const out: Array<[string, string]> = []
  if (headers === null || headers === undefined) return out
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const pair of headers as unknown[][]) push(out, pair[0], pair[1])
    } else {
      for (let i = 0; i + 1 < headers.length; i += 2) push(out, headers[i], headers[i + 1])
    }
    return out
  }
  if (typeof headers === 'object') {
    const it = (headers as { [Symbol.iterator]?: unknown })[Symbol.iterator]
    const entries =
      typeof it === 'function' ? (headers as Iterable<[unknown, unknown]>) : Object.entries(headers as Record<string, unknown>)
    for (const [k, v] of entries) push(out, k, v)
  }
  return out
}

/** Headers as a flat array without any header named in `drop` (lowercase names). */
export function withoutHeaders(headers: unknown, drop: ReadonlySet<string>): FlatHeaders {
  const out: FlatHeaders = []
  for (const [k, v] of headerPairs(headers)) if (!drop.has(k)) out.push(k, v)
  return out
}
