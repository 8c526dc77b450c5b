import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { hasUnprintable, printable } from '../../src/policy/printable.js'

/** What a terminal acts on: C0, DEL, C1, and Unicode format characters (general category Cf), lone surrogates. */
const ACTS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]|\p{Cs}/u

describe('printable', () => {
  it('writes every control, format and bidi character as a visible escape (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        const out = printable(s, 1000)
        expect(ACTS.test(out)).toBe(false)
      }),
      { numRuns: 2000 },
    )
  })

  it('keeps ordinary text as it is and marks escapes so that none can be forged', () => {
    expect(printable('agent-summarizer-v2 wants L3: ünïcode 😀')).toBe('agent-summarizer-v2 wants L3: ünïcode 😀')
    expect(printable('a\u001b[2Kb')).toBe('a\\u{1b}[2Kb')
    expect(printable('\u202eevil')).toBe('\\u{202e}evil')
    // A literal backslash-u in the input cannot pass for one of ours.
    expect(printable('\\u{1b}')).toBe('\\\\u{1b}')
    expect(printable('x'.repeat(10), 4)).toBe('xxxx…')
    expect(hasUnprintable('ok')).toBe(false)
    expect(hasUnprintable('o\u200bk')).toBe(true)
  })
})
