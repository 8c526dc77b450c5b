/**
 * One reading of a JSON text: bytes that are valid UTF-8 (fatal decoding, no replacement
 * characters, a BOM is not stripped) holding one JSON value whose objects, at any depth, never
 * repeat a member name after unescaping (`"a"` and `"\u0061"` are the same name).
 *
 * RFC 8259 §4 says names SHOULD be unique and leaves duplicates to each reader (last-wins,
 * first-wins, error); RFC 7515 §5.2 and RFC 8725 §3.12 ask a JWS reader to refuse them. A
 * security token must read the same in every parser, so here a duplicate is an error.
 *
 * `JSON.parse` does the parsing (its numbers and escapes are the reference); a second pass over
 * the already-valid text only tracks the names of each open object.
 */

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

export type StrictJsonRule = 'utf8' | 'syntax' | 'duplicate'

export class StrictJsonError extends Error {
  readonly rule: StrictJsonRule
  constructor(rule: StrictJsonRule, message: string) {
    super(message)
    this.rule = rule
    this.name = 'StrictJsonError'
  }
}

/** Decode UTF-8 strictly: overlong forms, CESU-8 surrogates and lone continuation bytes throw. */
export function decodeUtf8Strict(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new StrictJsonError('utf8', 'not valid UTF-8')
  }
}

const QUOTE = 34
const BACKSLASH = 92
const OPEN_OBJECT = 123
const CLOSE_OBJECT = 125
const OPEN_ARRAY = 91
const CLOSE_ARRAY = 93
const COMMA = 44

/** The index of the quote that closes the string opened at `start` (text already valid JSON). */
function stringEnd(text: string, start: number): number {
  let j = text.indexOf('"', start + 1)
  for (;;) {
    let slashes = 0
    while (text.charCodeAt(j - 1 - slashes) === BACKSLASH) slashes++
    if (slashes % 2 === 0) return j
    j = text.indexOf('"', j + 1)
  }
}

/** Objects with more names than this are checked with a set rather than by comparing each pair. */
const MAX_PAIRWISE_NAMES = 32

/** Whether the `length` characters at `a` and at `b` in `text` are the same. */
function sameChars(text: string, a: number, b: number, length: number): boolean {
  for (let k = 0; k < length; k++) if (text.charCodeAt(a + k) !== text.charCodeAt(b + k)) return false
  return true
}

/**
 * The common case of {@link assertUniqueNames}: a text without a backslash (so no escape
 * anywhere: each string ends at the next quote and every name is spelled as it reads) whose
 * objects are small. Each name is compared in place with the names before it in its object,
 * with no substring or set per name. True: no repeat; false: a repeat; undefined: an object
 * with more than {@link MAX_PAIRWISE_NAMES} names, left to the general check.
 */
function namesUniqueWithoutEscapes(text: string): boolean | undefined {
  // Name starts and lengths of every open object, innermost last; per open container, where
  // its names begin in them (-1 for an array).
  const starts: number[] = []
  const lengths: number[] = []
  const frames: number[] = []
  let expectName = false
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      const end = text.indexOf('"', i + 1)
      if (expectName) {
        const from = frames[frames.length - 1] as number
        if (starts.length - from >= MAX_PAIRWISE_NAMES) return undefined
        const length = end - i - 1
        for (let k = from; k < starts.length; k++)
          if (lengths[k] === length && sameChars(text, starts[k] as number, i + 1, length)) return false
        starts.push(i + 1)
        lengths.push(length)
        expectName = false
      }
      i = end
    } else if (c === OPEN_OBJECT) {
      frames.push(starts.length)
      expectName = true
    } else if (c === OPEN_ARRAY) {
      frames.push(-1)
      expectName = false
    } else if (c === CLOSE_OBJECT) {
      const from = frames.pop() as number
      starts.length = from
      lengths.length = from
      expectName = false
    } else if (c === CLOSE_ARRAY) {
      frames.pop()
      expectName = false
    } else if (c === COMMA) {
      const top = frames[frames.length - 1]
      expectName = top !== undefined && top !== -1
    }
  }
  return true
}

/** Throws if an object in `text` (valid JSON) names a member twice. */
function assertUniqueNames(text: string): void {
  if (text.indexOf('\\') === -1) {
    const unique = namesUniqueWithoutEscapes(text)
    if (unique === false) throw new StrictJsonError('duplicate', 'a JSON object names a member twice')
    if (unique === true) return
  }
  assertUniqueNamesGeneral(text)
}

/** {@link assertUniqueNames} for any text: escapes undone, names of each object in a set. */
function assertUniqueNamesGeneral(text: string): void {
  // One entry per open container: the names seen so far for an object, null for an array.
  const stack: (Set<string> | null)[] = []
  let expectName = false
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      const end = stringEnd(text, i)
      if (expectName) {
        const raw = text.slice(i + 1, end)
        const name = raw.indexOf('\\') === -1 ? raw : (JSON.parse(text.slice(i, end + 1)) as string)
        const names = stack[stack.length - 1] as Set<string>
        if (names.has(name)) throw new StrictJsonError('duplicate', 'a JSON object names a member twice')
        names.add(name)
        expectName = false
      }
      i = end
    } else if (c === OPEN_OBJECT) {
      stack.push(new Set())
      expectName = true
    } else if (c === OPEN_ARRAY) {
      stack.push(null)
      expectName = false
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop()
      expectName = false
    } else if (c === COMMA) {
      expectName = stack[stack.length - 1] != null
    }
  }
}

/** Parse a JSON text with unique member names at every depth. Throws {@link StrictJsonError}. */
export function parseStrictJsonText(text: string): unknown {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new StrictJsonError('syntax', 'not JSON')
  }
  if (typeof value === 'object' && value !== null) assertUniqueNames(text)
  return value
}

/** Strict UTF-8, then {@link parseStrictJsonText}. Throws {@link StrictJsonError}. */
export function parseStrictJson(bytes: Uint8Array): unknown {
  return parseStrictJsonText(decodeUtf8Strict(bytes))
}
