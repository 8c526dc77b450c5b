/**
 * Where a JSON text (RFC 8259) first breaks the grammar, as a line and column, and what is
 * wrong there, in words that never quote the text (a manifest or a key file may hold
 * secrets). Used only after `JSON.parse` has failed, to say where to look.
 */

export interface JsonSyntaxPosition {
  /** 1-based. */
  readonly line: number
  /** 1-based, in characters from the start of the line. */
  readonly column: number
  /** What is wrong, e.g. "expected ',' or '}'". Never quotes the text. */
  readonly problem: string
}

class Stop {
  readonly at: number
  readonly problem: string
  constructor(at: number, problem: string) {
    this.at = at
    this.problem = problem
  }
}

/** The first syntax error of `text`, or undefined when it is valid JSON (or too deep to scan). */
export function jsonSyntaxPosition(text: string): JsonSyntaxPosition | undefined {
  let i = 0
  const fail = (problem: string, at = i): never => {
    throw new Stop(at, at >= text.length ? 'unexpected end of input' : problem)
  }
  const ws = (): void => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
  }
  const expect = (c: string, problem: string): void => {
    ws()
    if (text[i] !== c) fail(problem)
    i++
  }
  const string = (): void => {
    i++ // the opening quote
    for (;;) {
      if (i >= text.length) fail('unterminated string')
      const c = text.charCodeAt(i)
      if (c === 0x22) {
        i++
        return
      }
      if (c < 0x20) fail('a control character in a string (escape it, e.g. \\n)')
      if (c === 0x5c) {
        const e = text[i + 1]
        if (e === 'u') {
          if (!/^[0-9A-Fa-f]{4}$/.test(text.slice(i + 2, i + 6))) fail('an invalid \\u escape')
          i += 6
          continue
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) fail('an invalid escape in a string', i)
        i += 2
        continue
      }
      i++
    }
  }
  const number = (): void => {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400))
    if (m === null) fail('an invalid number')
    i += (m as RegExpExecArray)[0].length
  }
  const value = (): void => {
    ws()
    const c = text[i]
    if (c === '{') {
      i++
      ws()
      if (text[i] === '}') {
        i++
        return
      }
      for (;;) {
        ws()
        if (text[i] !== '"') fail(text[i] === '}' ? "a trailing comma before '}'" : 'expected a member name in double quotes')
        string()
        expect(':', "expected ':' after the member name")
        value()
        ws()
        if (text[i] === ',') {
          i++
          continue
        }
        if (text[i] === '}') {
          i++
          return
        }
        fail("expected ',' or '}'")
      }
    }
    if (c === '[') {
      i++
      ws()
      if (text[i] === ']') {
        i++
        return
      }
      for (;;) {
        ws()
        if (text[i] === ']') fail("a trailing comma before ']'")
        value()
        ws()
        if (text[i] === ',') {
          i++
          continue
        }
        if (text[i] === ']') {
          i++
          return
        }
        fail("expected ',' or ']'")
      }
    }
    if (c === '"') return string()
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number()
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, i)) {
        i += word.length
        return
      }
    }
    fail(c === "'" ? 'single quotes (JSON strings take double quotes)' : 'unexpected character (expected a value)')
  }
  try {
    if (text.charCodeAt(0) === 0xfeff) fail('a byte order mark (save the file as UTF-8 without BOM)', 0)
    value()
    ws()
    if (i < text.length) fail('unexpected content after the end of the document')
    return undefined
  } catch (e) {
    if (!(e instanceof Stop)) return undefined // too deeply nested to scan: no position
    const before = text.slice(0, e.at)
    const line = before.split('\n').length
    const column = e.at - (before.lastIndexOf('\n') + 1) + 1
    return { line, column, problem: e.problem }
  }
}
