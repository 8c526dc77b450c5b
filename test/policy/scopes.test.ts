import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compileScopeTemplate, covers, grantsCover, isExactScope, isScopePattern, isSubset } from 'agent-trust'

const segChar = fc.constantFrom(...'abcXYZ019._@/+-'.split(''))
const segment = fc.string({ unit: segChar, minLength: 1, maxLength: 6 })
const patSegment = fc.oneof({ weight: 3, arbitrary: segment }, { weight: 1, arbitrary: fc.constant('*') })
const scopeOf = (seg: fc.Arbitrary<string>) => fc.array(seg, { minLength: 1, maxLength: 4 }).map((xs) => xs.join(':'))
const exact = scopeOf(segment)
const pattern = scopeOf(patSegment)
const grantSet = fc.array(pattern, { minLength: 0, maxLength: 5 })

describe('scope grammar', () => {
  it.each([
    ['db:read:documents:namespace:user-123', true],
    ['a', true],
    ['x'.repeat(64), true],
    ['x'.repeat(65), false],
    ['', false],
    ['a::b', false],
    [':a', false],
    ['a:', false],
    ['a:*', false],
    ['a b', false],
    ['a\u0000b', false],
    ['caf\u00e9', false],
    ['a\n', false],
    [Array(16).fill('a').join(':'), true],
    [Array(17).fill('a').join(':'), false],
  ])('exact %j -> %s', (s, ok) => {
    expect(isExactScope(s)).toBe(ok)
  })

  it('patterns allow * only as a whole segment', () => {
    expect(isScopePattern('db:*:documents')).toBe(true)
    expect(isScopePattern('db:re*')).toBe(false)
    expect(isScopePattern('**')).toBe(false)
    expect(isScopePattern('*')).toBe(true)
  })

  it('nothing outside the grammar is accepted (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        const ok = isExactScope(s)
        const segs = s.split(':')
        const grammatical = segs.length <= 16 && segs.every((x) => /^[A-Za-z0-9._@/+-]{1,64}$/.test(x))
        expect(ok).toBe(grammatical)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('matching and attenuation', () => {
  it('* matches exactly one segment', () => {
    expect(covers('db:*:documents', 'db:read:documents')).toBe(true)
    expect(covers('db:*', 'db:read:documents')).toBe(false)
    expect(covers('db:*:documents', 'db:documents')).toBe(false)
    expect(covers('db:read', 'db:*')).toBe(false)
    expect(covers('db:*', 'db:*')).toBe(true)
  })

  it('covers answers as comparing split segments does, on any strings (empty segments, stray stars)', () => {
    // The definition `covers` implements in place: same segment count, each pattern segment `*` or equal.
    const bySplit = (pattern: string, other: string): boolean => {
      const p = pattern.split(':')
      const o = other.split(':')
      return p.length === o.length && p.every((seg, i) => seg === '*' || seg === o[i])
    }
    const text = fc.string({ unit: fc.constantFrom('a', 'b', '*', ':', 'ab'), maxLength: 12 })
    fc.assert(
      fc.property(text, text, (p, o) => {
        expect(covers(p, o)).toBe(bySplit(p, o))
      }),
      { numRuns: 20000 },
    )
    fc.assert(
      fc.property(pattern, fc.oneof(exact, pattern), (p, o) => {
        expect(covers(p, o)).toBe(bySplit(p, o))
      }),
      { numRuns: 5000 },
    )
    for (const [p, o] of [
      ['*', ''],
      ['', '*'],
      ['*:', 'a:'],
      [':', ':a'],
      ['a:*', 'a:'],
      ['**', 'a'],
      ['a', 'a:'],
    ] as const)
      expect(covers(p, o)).toBe(bySplit(p, o))
  })

  it('subset is reflexive', () => {
    fc.assert(fc.property(grantSet, (a) => isSubset(a, a)))
  })

  it('subset is transitive', () => {
    fc.assert(
      fc.property(grantSet, grantSet, grantSet, (a, b, c) => {
        if (isSubset(a, b) && isSubset(b, c)) expect(isSubset(a, c)).toBe(true)
      }),
      { numRuns: 3000 },
    )
  })

  it('a scope matched by A is matched by every B that A is a subset of', () => {
    fc.assert(
      fc.property(grantSet, grantSet, exact, (a, b, s) => {
        if (grantsCover(a, s) && isSubset(a, b)) expect(grantsCover(b, s)).toBe(true)
      }),
      { numRuns: 3000 },
    )
  })

  it('attenuation holds on constructed supersets (non-vacuous)', () => {
    fc.assert(
      fc.property(grantSet, fc.array(pattern, { maxLength: 3 }), exact, (a, extra, s) => {
        const b = [...a, ...extra]
        expect(isSubset(a, b)).toBe(true)
        if (grantsCover(a, s)) expect(grantsCover(b, s)).toBe(true)
      }),
    )
  })
})

describe('scope templates', () => {
  const t = compileScopeTemplate('db:read:documents:namespace:{namespace}')
  it('fills argument values', () => {
    expect(t.fill({ namespace: 'user-123' })).toBe('db:read:documents:namespace:user-123')
    expect(t.fill({ namespace: 42 })).toBe('db:read:documents:namespace:42')
  })
  it.each([['user-123:admin'], ['*'], [''], ['a'.repeat(65)], ['user 1'], [null], [{}], [['x']], [true]])(
    'refuses argument %j that is not one segment',
    (v) => {
      expect(() => t.fill({ namespace: v })).toThrow(expect.objectContaining({ code: 'ERR_SCOPE_INVALID' }))
    },
  )
  it('refuses a missing argument and inherited properties', () => {
    expect(() => t.fill({})).toThrow(expect.objectContaining({ code: 'ERR_SCOPE_INVALID' }))
    expect(() => t.fill(Object.create({ namespace: 'user-123' }))).toThrow(expect.objectContaining({ code: 'ERR_SCOPE_INVALID' }))
  })
  it('refuses wildcard templates', () => {
    expect(() => compileScopeTemplate('db:*:{x}')).toThrow(expect.objectContaining({ code: 'ERR_SCOPE_INVALID' }))
  })
})
