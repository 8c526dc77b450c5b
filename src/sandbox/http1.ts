/**
 * HTTP/1.1 message framing for the sandbox's egress proxy (RFC 9112), strict on purpose: the
 * proxy relays bodies byte for byte, so it must find every message's end exactly where the
 * other side will. Anything a lenient parser and a strict one could read differently (request
 * smuggling, RFC 9112 section 11.2) is refused: bare CR or LF, obs-fold, whitespace before a
 * field's colon, `Transfer-Encoding` other than a lone `chunked`, `Transfer-Encoding` together
 * with `Content-Length`, several differing `Content-Length` values, a chunk size that is not
 * hex, a chunk that is not closed by CRLF.
 */

/** A head longer than this is refused (431 for a request, 502 for a response). */
export const MAX_HEAD = 64 * 1024
const MAX_FIELDS = 128
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
// Hop-by-hop fields (RFC 9110 section 7.6.1) and the proxy's own; never forwarded.
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
])

export type Field = readonly [name: string, value: string]

interface Head {
  /** Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: 0 | 1
  /** Field names lowercased, values trimmed, in order. */
  readonly fields: readonly Field[]
  /** Bytes of the head, final CRLFCRLF included. */
  readonly size: number
}
export interface RequestHead extends Head {
  readonly method: string
  readonly target: string
}
export interface ResponseHead extends Head {
  readonly status: number
  readonly reason: string
}
export type Parsed<T> = { ok: true; head: T } | { ok: false; error: string } | undefined

/** How a message body ends (RFC 9112 section 6.3). */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' }

/** The head at the start of `buf`, undefined while incomplete. Leading empty lines are skipped (RFC 9112 section 2.2). */
function splitHead(buf: Buffer): { ok: true; lines: string[]; size: number } | { ok: false; error: string } | undefined {
  let start = 0
  while (buf.length >= start + 2 && buf[start] === 13 && buf[start + 1] === 10) start += 2
  const end = buf.indexOf('\r\n\r\n', start, 'latin1')
  if (end < 0) return buf.length - start > MAX_HEAD ? { ok: false, error: 'the head is too large' } : undefined
  if (end - start > MAX_HEAD) return { ok: false, error: 'the head is too large' }
  const text = buf.toString('latin1', start, end)
  const lines = text.split('\r\n')
  if (lines.length > MAX_FIELDS + 1) return { ok: false, error: 'too many header fields' }
  for (const l of lines)
    if (l.includes('\r') || l.includes('\n') || l.includes('\0')) return { ok: false, error: 'a bare CR, LF or NUL in the head' }
  return { ok: true, lines, size: end + 4 }
}

function parseFields(lines: readonly string[]): Field[] | string {
  const out: Field[] = []
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i] as string
    const c = l.indexOf(':')
    // obs-fold (a line starting with whitespace) and whitespace before the colon: RFC 9112 sections 5.1, 5.2.
    if (c <= 0) return 'a header line without a field name'
    const name = l.slice(0, c)
    if (!TOKEN.test(name)) return 'a field name that is not a token'
    const value = l.slice(c + 1).replace(/^[\t ]+|[\t ]+$/g, '')
    if (!FIELD_VALUE.test(value)) return 'a control character in a field value'
    out.push([name.toLowerCase(), value])
  }
  return out
}

export function parseRequestHead(buf: Buffer): Parsed<RequestHead> {
  const s = splitHead(buf)
  if (s === undefined || !s.ok) return s
  const m = REQUEST_LINE.exec(s.lines[0] as string)
  if (m === null) return { ok: false, error: 'the request line is not "METHOD target HTTP/1.x"' }
  const fields = parseFields(s.lines)
  if (typeof fields === 'string') return { ok: false, error: fields }
  return { ok: true, head: { method: m[1] as string, target: m[2] as string, minor: m[3] === '0' ? 0 : 1, fields, size: s.size } }
}

export function parseResponseHead(buf: Buffer): Parsed<ResponseHead> {
  const s = splitHead(buf)
  if (s === undefined || !s.ok) return s
  const m = STATUS_LINE.exec(s.lines[0] as string)
  if (m === null) return { ok: false, error: 'the status line is not "HTTP/1.x nnn reason"' }
  const fields = parseFields(s.lines)
  if (typeof fields === 'string') return { ok: false, error: fields }
  return { ok: true, head: { status: Number(m[2]), reason: m[3] ?? '', minor: m[1] === '0' ? 0 : 1, fields, size: s.size } }
}

/** Every value of a field (a list field's members split on commas, RFC 9110 section 5.6.1). */
export function listValues(fields: readonly Field[], name: string): string[] {
  const out: string[] = []
  for (const [n, v] of fields) if (n === name) for (const p of v.split(',')) if (p.trim() !== '') out.push(p.trim().toLowerCase())
  return out
}

export function fieldValues(fields: readonly Field[], name: string): string[] {
  return fields.filter(([n]) => n === name).map(([, v]) => v)
}

/**
 * The framing fields are never hop-by-hop: a `Connection` header naming one would have the
 * proxy frame the body by a field it then drops (RFC 9110 section 7.6.1), so the next hop
 * reads the same bytes as another message (request smuggling). A `Transfer-Encoding` field
 * with no coding in it is refused too: some readers take its presence alone for chunked.
 */
function framingFieldsProblem(fields: readonly Field[]): string | undefined {
  const named = listValues(fields, 'connection')
  if (named.includes('content-length') || named.includes('transfer-encoding')) return 'Connection names a framing field'
  if (fieldValues(fields, 'transfer-encoding').length > 0 && listValues(fields, 'transfer-encoding').length === 0)
    return 'an empty Transfer-Encoding'
  return undefined
}

/** Content-Length / Transfer-Encoding, or an error for any ambiguous combination. */
function bodyFraming(fields: readonly Field[], minor: 0 | 1): { ok: true; framing: Framing } | { ok: false; error: string } {
  const problem = framingFieldsProblem(fields)
  if (problem !== undefined) return { ok: false, error: problem }
  const te = listValues(fields, 'transfer-encoding')
  const cl = fieldValues(fields, 'content-length')
  if (te.length > 0) {
    if (cl.length > 0) return { ok: false, error: 'both Transfer-Encoding and Content-Length' }
    if (minor === 0) return { ok: false, error: 'Transfer-Encoding in an HTTP/1.0 message' }
    if (te.length !== 1 || te[0] !== 'chunked') return { ok: false, error: 'a Transfer-Encoding other than chunked' }
    return { ok: true, framing: { kind: 'chunked' } }
  }
  if (cl.length > 0) {
    const values = new Set(cl.flatMap((v) => v.split(',').map((x) => x.trim())))
    const [only] = values
    if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only)) return { ok: false, error: 'an invalid Content-Length' }
    const length = Number(only)
    return { ok: true, framing: length === 0 ? { kind: 'none' } : { kind: 'length', length } }
  }
  return { ok: true, framing: { kind: 'none' } }
}

/** How a request's body is framed (RFC 9112 section 6.3, rules 3 to 6 and 8). */
export function requestFraming(head: RequestHead): { ok: true; framing: Framing } | { ok: false; error: string } {
  return bodyFraming(head.fields, head.minor)
}

/** How a response's body is framed (RFC 9112 section 6.3): HEAD, 1xx, 204 and 304 have none; otherwise TE, CL, or until close. */
export function responseFraming(head: ResponseHead, method: string): { ok: true; framing: Framing } | { ok: false; error: string } {
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304) return { ok: true, framing: { kind: 'none' } }
  const problem = framingFieldsProblem(head.fields)
  if (problem !== undefined) return { ok: false, error: problem }
  const te = listValues(head.fields, 'transfer-encoding')
  if (te.length > 0 && head.minor === 1 && fieldValues(head.fields, 'content-length').length === 0)
    return { ok: true, framing: te[te.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' } }
  const f = bodyFraming(head.fields, head.minor)
  if (!f.ok) return f
  if (f.framing.kind === 'none' && fieldValues(head.fields, 'content-length').length === 0) return { ok: true, framing: { kind: 'close' } }
  return f
}

/** The head to forward: start line, then the fields minus hop-by-hop ones and those `Connection` names. */
export function forwardHead(start: string, fields: readonly Field[], extra: readonly Field[] = [], drop: readonly string[] = []): Buffer {
  const named = new Set([...listValues(fields, 'connection'), ...drop])
  let out = `${start}\r\n`
  for (const [n, v] of fields) if (!HOP.has(n) && !named.has(n)) out += `${n}: ${v}\r\n`
  for (const [n, v] of extra) out += `${n}: ${v}\r\n`
  return Buffer.from(`${out}\r\n`, 'latin1')
}

/**
 * Tracks where a body ends, without copying it. `feed` returns how many bytes of `chunk`
 * (from `offset`) belong to the body; `done` turns true after its last byte; `error` is set
 * (and nothing more is consumed) on malformed chunked framing.
 */
export class BodyTracker {
  done: boolean
  error: string | undefined
  #left: number
  #chunked: boolean
  // chunked states: 0 size, 1 extension, 2 LF after size, 3 data, 4 CR after data, 5 LF after data,
  // 6 trailer line start, 7 trailer line, 8 LF after trailer line, 9 LF after the final empty line.
  #state = 0
  #size = 0
  #digits = 0

  constructor(framing: Framing) {
    this.#chunked = framing.kind === 'chunked'
    this.#left = framing.kind === 'length' ? framing.length : framing.kind === 'close' ? Infinity : 0
    this.done = framing.kind === 'none'
  }

  feed(chunk: Buffer, offset = 0): number {
    if (this.done || this.error !== undefined) return 0
    if (!this.#chunked) {
      const n = Math.min(this.#left, chunk.length - offset)
      this.#left -= n
      if (this.#left === 0) this.done = true
      return n
    }
    let i = offset
    while (i < chunk.length && !this.done) {
      if (this.#state === 3) {
        const n = Math.min(this.#size, chunk.length - i)
        this.#size -= n
        i += n
        if (this.#size === 0) this.#state = 4
        continue
      }
      const b = chunk[i] as number
      i++
      switch (this.#state) {
        case 0:
          if (isHex(b) && this.#digits < 13) {
            this.#size = this.#size * 16 + parseInt(String.fromCharCode(b), 16)
            this.#digits++
          } else if (this.#digits > 0 && b === 59) this.#state = 1
          else if (this.#digits > 0 && b === 13) this.#state = 2
          else return this.#fail('a chunk size that is not hex')
          break
        case 1:
          if (b === 13) this.#state = 2
          else if (b === 10 || b === 0) return this.#fail('a bare LF in a chunk extension')
          break
        case 2:
          if (b !== 10) return this.#fail('a chunk size line not ended by CRLF')
          this.#state = this.#size === 0 ? 6 : 3
          this.#digits = 0
          break
        case 4:
          if (b !== 13) return this.#fail('chunk data longer than its size')
          this.#state = 5
          break
        case 5:
          if (b !== 10) return this.#fail('chunk data not ended by CRLF')
          this.#state = 0
          break
        case 6:
          this.#state = b === 13 ? 9 : b === 10 || b === 0 ? -1 : 7
          if (this.#state === -1) return this.#fail('a bare LF in the trailer section')
          break
        case 7:
          if (b === 13) this.#state = 8
          else if (b === 10 || b === 0) return this.#fail('a bare LF in the trailer section')
          break
        case 8:
          if (b !== 10) return this.#fail('a trailer line not ended by CRLF')
          this.#state = 6
          break
        case 9:
          if (b !== 10) return this.#fail('the chunked body is not ended by CRLF')
          this.done = true
          break
      }
    }
    return i - offset
  }

  #fail(error: string): number {
    this.error = error
    return 0
  }
}

function isHex(b: number): boolean {
  return (b >= 48 && b <= 57) || (b >= 65 && b <= 70) || (b >= 97 && b <= 102)
}
