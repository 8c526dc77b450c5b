/**
 * One reading of a JSON text: any object that names a member twice (at any depth, in any
 * spelling) and any byte string that is not valid UTF-8 are refused; everything else reads
 * exactly as JSON.parse reads it.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseStrictJson, parseStrictJsonText, StrictJsonError } from '../../src/lib/strict-json.js'

const rule = (f: () => unknown): string | undefined => {
  try {
    f()
    return undefined
  } catch (e) {
    expect(e).toBeInstanceOf(StrictJsonError)
    return (e as StrictJsonError).rule
  }
}

/** A name spelled with every character \u-escaped: the same name after unescaping. */
const escaped = (name: string) => `"${[...name].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"`

describe('strict JSON: duplicate member names', () => {
  it('refuses a name given twice, at the top, nested, in arrays, and through a \\u escape', () => {
    expect(rule(() => parseStrictJsonText('{"alg":"ES256","alg":"none"}'))).toBe('duplicate')
    expect(rule(() => parseStrictJsonText('{"alg":"ES256","\\u0061lg":"none"}'))).toBe('duplicate')
    expect(rule(() => parseStrictJsonText('{"context":{"task":"a","task":"b"}}'))).toBe('duplicate')
    expect(rule(() => parseStrictJsonText('{"a":[{"x":1},{"y":2,"y":3}]}'))).toBe('duplicate')
    expect(rule(() => parseStrictJsonText('{"a\\"b":1,"a\\u0022b":2}'))).toBe('duplicate')
    expect(rule(() => parseStrictJsonText('{"\\\\":1,"\\u005c":2}'))).toBe('duplicate')
    expect(rule(() => parseStrictJsonText('{"__proto__":1,"__proto__":2}'))).toBe('duplicate')
  })

  it('accepts the same name in sibling objects, and names equal to string values', () => {
    expect(parseStrictJsonText('{"a":{"x":1},"b":{"x":2},"x":"x"}')).toEqual({ a: { x: 1 }, b: { x: 2 }, x: 'x' })
    expect(parseStrictJsonText('[{"x":1},{"x":2}]')).toEqual([{ x: 1 }, { x: 2 }])
    expect(parseStrictJsonText('{"s":"\\"x\\":1,\\"x\\":2"}')).toEqual({ s: '"x":1,"x":2' })
  })

  const names = fc.string({ minLength: 0, maxLength: 6 })
  const leaf = fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.boolean(), fc.constant(null))
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(names, tie('v'), { maxKeys: 3 })),
  })).v

  it('reads every JSON text without a repeated name exactly as JSON.parse does (property)', () => {
    fc.assert(
      fc.property(value, (v) => {
        const text = JSON.stringify(v, null, 1)
        expect(parseStrictJsonText(text)).toEqual(JSON.parse(text))
      }),
      { numRuns: 500 },
    )
  })

  it('refuses any JSON object with a name duplicated anywhere, in either spelling (property)', () => {
    fc.assert(
      fc.property(
        fc.dictionary(names, value, { maxKeys: 4 }),
        names,
        value,
        value,
        fc.nat(),
        fc.boolean(),
        (outer, name, a, b, depth, escape) => {
          // Build {"name":a, ..., "name":b} with the second spelling escaped or not, then bury it.
          const rest = Object.entries(outer)
            .filter(([k]) => k !== name)
            .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
          const dup = `{${[`${JSON.stringify(name)}:${JSON.stringify(a)}`, ...rest, `${escape ? escaped(name) : JSON.stringify(name)}:${JSON.stringify(b)}`].join(',')}}`
          let text = dup
          for (let i = 0; i < depth % 4; i++) text = i % 2 === 0 ? `{"n${i}":${text}}` : `[1,${text}]`
          expect(rule(() => parseStrictJsonText(text))).toBe('duplicate')
        },
      ),
      { numRuns: 500 },
    )
  })
})

/**
 * The duplicate check as first written, for every text: strings skipped by counting the
 * backslashes before each quote, names unescaped by JSON.parse, each object's names in a
 * set. The reference the in-place check of escape-free texts must agree with.
 */
function referenceHasDuplicate(text: string): boolean {
  const stringEnd = (start: number): number => {
    let j = text.indexOf('"', start + 1)
    for (;;) {
      let slashes = 0
      while (text.charCodeAt(j - 1 - slashes) === 92) slashes++
      if (slashes % 2 === 0) return j
      j = text.indexOf('"', j + 1)
    }
  }
  const stack: (Set<string> | null)[] = []
  let expectName = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '"') {
      const end = stringEnd(i)
      if (expectName) {
        const name = JSON.parse(text.slice(i, end + 1)) as string
        const names = stack[stack.length - 1] as Set<string>
        if (names.has(name)) return true
        names.add(name)
        expectName = false
      }
      i = end
    } else if (c === '{') {
      stack.push(new Set())
      expectName = true
    } else if (c === '[') {
      stack.push(null)
      expectName = false
    } else if (c === '}' || c === ']') {
      stack.pop()
      expectName = false
    } else if (c === ',') {
      expectName = stack[stack.length - 1] != null
    }
  }
  return false
}

describe('strict JSON: the in-place check of escape-free texts', () => {
  // Few distinct names, so that repeats are frequent; values that hold names as strings too.
  const name = fc.constantFrom('a', 'b', 'ab', 'ba', 'aa', '', 'x y', 'é')
  const leaf = fc.oneof(fc.integer(), name, fc.boolean(), fc.constant(null))
  const json: fc.Arbitrary<string> = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      leaf.map((x) => JSON.stringify(x)),
      fc.array(tie('v'), { maxLength: 4 }).map((xs) => `[${xs.join(',')}]`),
      // Members as a list, so a name may come twice: what JSON.stringify of an object never writes.
      fc.array(fc.tuple(name, tie('v')), { maxLength: 5 }).map((ms) => `{${ms.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
    ),
  })).v as fc.Arbitrary<string>
  const spaced = (text: string, seed: number) => text.replace(/[,:{}[\]]/g, (c, i: number) => ((seed >> (i % 16)) & 1 ? ` ${c}\n` : c))

  it('finds a repeated name exactly when the set-based check does (property)', () => {
    let repeats = 0
    fc.assert(
      fc.property(json, fc.nat(), (raw, seed) => {
        const text = spaced(raw, seed)
        const expected = referenceHasDuplicate(text)
        if (expected) repeats++
        expect(rule(() => parseStrictJsonText(text))).toBe(expected ? 'duplicate' : undefined)
      }),
      { numRuns: 5000 },
    )
    expect(repeats).toBeGreaterThan(500)
  })

  it('hands objects of more than 32 names to the set-based check, with the same answer', () => {
    const many = (n: number, repeat: boolean) =>
      `{"o":{${Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',')}${repeat ? ',"k3":0' : ''}},"k3":1}`
    for (const n of [31, 32, 33, 200]) {
      expect(rule(() => parseStrictJsonText(many(n, false)))).toBeUndefined()
      expect(rule(() => parseStrictJsonText(many(n, true)))).toBe('duplicate')
    }
  })
})

describe('strict JSON: UTF-8', () => {
  const bytes = (...parts: (string | number[])[]) =>
    Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))))

  it('refuses overlong forms, CESU-8 surrogates, lone continuation bytes and truncated sequences', () => {
    expect(rule(() => parseStrictJson(bytes('{"a":"', [0xc0, 0xaf], '"}')))).toBe('utf8') // overlong '/'
    expect(rule(() => parseStrictJson(bytes('{"a":"', [0xe0, 0x80, 0xaf], '"}')))).toBe('utf8')
    expect(rule(() => parseStrictJson(bytes('{"a":"', [0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80], '"}')))).toBe('utf8') // CESU-8
    expect(rule(() => parseStrictJson(bytes('{"a":"', [0x80], '"}')))).toBe('utf8')
    expect(rule(() => parseStrictJson(bytes('{"a":"', [0xe2, 0x82], '"}')))).toBe('utf8')
    expect(rule(() => parseStrictJson(bytes('{"a":"', [0xf4, 0x90, 0x80, 0x80], '"}')))).toBe('utf8') // > U+10FFFF
  })

  it('does not strip a byte-order mark (it is not JSON whitespace)', () => {
    expect(rule(() => parseStrictJson(bytes([0xef, 0xbb, 0xbf], '{}')))).toBe('syntax')
  })

  it('refuses any byte string that is not valid UTF-8, and reads valid UTF-8 as Buffer#toString does (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), (raw) => {
        const body = Buffer.from(raw)
        const input = bytes(
          '{"a":"',
          [...body].map((b) => (b === 0x22 || b === 0x5c || b < 0x20 ? 0x41 : b)),
          '"}',
        )
        const valid = Buffer.from(input.toString('utf8'), 'utf8').equals(input)
        const r = rule(() => parseStrictJson(input))
        if (valid) expect(r).toBeUndefined()
        else expect(r).toBe('utf8')
      }),
      { numRuns: 3000 },
    )
  })
})
