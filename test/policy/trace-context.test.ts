/** Which `_meta` trace-context keys may travel on (W3C Trace Context and Baggage). */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { forwardableTraceContext } from '#internal'
import { MAX_BAGGAGE_LENGTH, MAX_TRACESTATE_LENGTH } from '../../src/policy/limits.js'

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

describe('forwardableTraceContext', () => {
  it('takes the three W3C keys when well-formed', () => {
    expect(
      forwardableTraceContext({ traceparent: TP, tracestate: 'rojo=00f067aa0ba902b7,tenant@vendor=x', baggage: 'a=1;p, b=%20' }),
    ).toEqual({
      traceparent: TP,
      tracestate: 'rojo=00f067aa0ba902b7,tenant@vendor=x',
      baggage: 'a=1;p, b=%20',
    })
  })

  it('drops invalid trace ids, version ff, upper case, a lone tracestate, duplicates and oversized values', () => {
    expect(forwardableTraceContext({ traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' })).toBeUndefined()
    expect(forwardableTraceContext({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01' })).toBeUndefined()
    expect(forwardableTraceContext({ traceparent: 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' })).toBeUndefined()
    expect(forwardableTraceContext({ traceparent: TP.toUpperCase() })).toBeUndefined()
    expect(forwardableTraceContext({ tracestate: 'a=b' })).toBeUndefined()
    expect(forwardableTraceContext({ traceparent: TP, tracestate: 'a=b,a=c' })).toEqual({ traceparent: TP })
    expect(forwardableTraceContext({ traceparent: TP, tracestate: `a=${'x'.repeat(MAX_TRACESTATE_LENGTH)}` })).toEqual({ traceparent: TP })
    expect(forwardableTraceContext({ baggage: `a=${'x'.repeat(MAX_BAGGAGE_LENGTH)}` })).toBeUndefined()
    expect(forwardableTraceContext({ baggage: Array.from({ length: 181 }, (_, i) => `k${i}=v`).join(',') })).toBeUndefined()
    expect(forwardableTraceContext({ traceparent: [TP] })).toBeUndefined()
    expect(forwardableTraceContext(null)).toBeUndefined()
    expect(forwardableTraceContext([TP])).toBeUndefined()
  })

  it('drops a list whose padding is anything but spaces and tabs (CR, LF, U+2028, no-break space, BOM, NUL)', () => {
    expect(forwardableTraceContext({ traceparent: TP, tracestate: 'a=b, \tc=d', baggage: 'k=v ,\tj=w' })).toEqual({
      traceparent: TP,
      tracestate: 'a=b, \tc=d',
      baggage: 'k=v ,\tj=w',
    })
    for (const pad of ['\r\n', '\n', '\r', '\u2028', '\u2029', '\u00a0', '\ufeff', '\u000b', '\u000c', '\u0000', '\u3000']) {
      const bad = { traceparent: TP, tracestate: `a=b,${pad}x-evil=1`, baggage: `k=v,${pad}Set-Cookie=x` }
      expect(forwardableTraceContext(bad), JSON.stringify(pad)).toEqual({ traceparent: TP })
      expect(forwardableTraceContext({ traceparent: TP, tracestate: `a=b${pad}` }), JSON.stringify(pad)).toEqual({ traceparent: TP })
    }
  })

  it('never returns a key other than the three, nor a value with a control character or beyond its cap (property)', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.constant(TP), fc.anything())),
        fc.oneof(
          fc.string(),
          fc
            .array(fc.constantFrom('a=b', 'k@v=1', ' ', '\t', '\r\n', '\u2028', '\u00a0', '\ufeff', ','), { maxLength: 8 })
            .map((xs) => xs.join('')),
        ),
        fc.oneof(
          fc.string(),
          fc
            .array(fc.constantFrom('k=v', 'j=w;p', ' ', '\t', '\r\n', '\u2028', '\u00a0', '\ufeff', ','), { maxLength: 8 })
            .map((xs) => xs.join('')),
        ),
        (rest, ts, bg) => {
          const out = forwardableTraceContext({ ...rest, traceparent: TP, tracestate: ts, baggage: bg, 'io.agent-trust/capability': 'tok' })
          expect(out).toBeDefined()
          for (const [k, v] of Object.entries(out!)) {
            expect(['traceparent', 'tracestate', 'baggage']).toContain(k)
            // Printable ASCII, and tabs as list padding (optional whitespace, RFC 9110 section 5.6.3).
            expect([...v].every((c) => c === '\t' || (c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) < 0x7f))).toBe(true)
          }
          expect((out!.tracestate ?? '').length).toBeLessThanOrEqual(MAX_TRACESTATE_LENGTH)
          expect((out!.baggage ?? '').length).toBeLessThanOrEqual(MAX_BAGGAGE_LENGTH)
        },
      ),
    )
  })
})
