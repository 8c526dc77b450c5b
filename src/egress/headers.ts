/**
 * undici accepts request headers in several shapes: an object, a flat `[name, value, ...]`
 * array (strings or Buffers), or any other iterable of `[name, value]` pairs (`Headers`,
 * `Map`); an array is always read flat (lib/core/request.js). Guards must read and rewrite
 * them exactly as undici does, or a header hides in a shape nobody checked: what undici
 * would read differently (an odd-length array, a name that is not a string or bytes, an
 * iterable entry that is not a pair) is refused.
 */
import { RequestInvalid } from '../errors.js'

export type HeaderValue = string | string[] | Buffer | readonly (string | Buffer)[]
export type FlatHeaders = string[]

function str(v: unknown): string {
  if (typeof v === 'string') return v
  if (Buffer.isBuffer(v)) return v.toString('latin1')
  return String(v)
}

function unreadable(what: string): RequestInvalid {
  return new RequestInvalid(`${what}: undici would read these headers otherwise than the guard; use an object or a flat array`, {
    details: { rule: 'headers' },
  })
}

/** A header name as undici takes it: a string or bytes, nothing it would coerce. */
function headerName(k: unknown): string | Buffer {
  if (typeof k === 'string' || Buffer.isBuffer(k)) return k
  throw unreadable('a header name that is not a string')
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
    if (headers.length % 2 !== 0) throw unreadable('a headers array of odd length')
    for (let i = 0; i < headers.length; i += 2) push(out, headerName(headers[i]), headers[i + 1])
    return out
  }
  if (typeof headers === 'object') {
    const it = (headers as { [Symbol.iterator]?: unknown })[Symbol.iterator]
    if (typeof it === 'function') {
      for (const entry of headers as Iterable<unknown>) {
        if (!Array.isArray(entry) || entry.length !== 2) throw unreadable('a headers entry that is not a [name, value] pair')
        push(out, headerName(entry[0]), entry[1])
      }
    } else for (const [k, v] of Object.entries(headers as Record<string, unknown>)) push(out, k, v)
    return out
  }
  throw unreadable('headers that are neither an object nor an array')
}

/** Headers as a flat array without any header named in `drop` (lowercase names). */
export function withoutHeaders(headers: unknown, drop: ReadonlySet<string>): FlatHeaders {
  const out: FlatHeaders = []
  for (const [k, v] of headerPairs(headers)) if (!drop.has(k)) out.push(k, v)
  return out
}
