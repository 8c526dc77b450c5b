/**
 * Scopes. A scope is 1-16 segments joined by `:`; a segment is 1-64
 * chars of `[A-Za-z0-9._@/+-]`, or `*` in a grant pattern. Compared byte for byte.
 *
 * Pure functions; no I/O. Subpath: `agent-trust` (root).
 */
import { ScopeInvalid } from '../errors.js'
import { MAX_SCOPE_SEGMENTS } from './limits.js'

const SEGMENT = /^[A-Za-z0-9._@/+-]{1,64}$/
// A whole exact scope in one pass: bounded repetition keeps the regex linear.
const EXACT_SCOPE = /^[A-Za-z0-9._@/+-]{1,64}(?::[A-Za-z0-9._@/+-]{1,64}){0,15}$/
const PATTERN_SCOPE = /^(?:[A-Za-z0-9._@/+-]{1,64}|\*)(?::(?:[A-Za-z0-9._@/+-]{1,64}|\*)){0,15}$/

/** True when `value` is one valid segment of an exact scope (no wildcard). */
export function isScopeSegment(value: unknown): value is string {
  return typeof value === 'string' && SEGMENT.test(value)
}

/** True for a wildcard-free scope, as tokens carry. */
export function isExactScope(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 16 * 65 && EXACT_SCOPE.test(value)
}

/** True for a grant pattern (segments may be `*`). */
export function isScopePattern(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 16 * 65 && PATTERN_SCOPE.test(value)
}

/** Throws `ERR_SCOPE_INVALID` unless `value` is an exact scope. */
export function assertExactScope(value: unknown): asserts value is string {
  if (!isExactScope(value)) throw new ScopeInvalid(undefined, { details: { rule: 'exact-scope' } })
}

/** Throws `ERR_SCOPE_INVALID` unless `value` is a grant pattern. */
export function assertScopePattern(value: unknown): asserts value is string {
  if (!isScopePattern(value)) throw new ScopeInvalid(undefined, { details: { rule: 'scope-pattern' } })
}

const STAR = 42 // '*'

/**
 * Does `pattern` (a grant) cover `other` (a scope or a pattern)? Same segment count;
 * each pattern segment is `*` or byte-equal. `*` never matches zero or several segments.
 * A pattern segment `*` covers an `*` in `other`; a literal never covers `*`.
 */
export function covers(pattern: string, other: string): boolean {
  if (pattern === other) return true
  // Segment by segment in place: the same answer as comparing `split(':')` arrays, without
  // two arrays per grant on every mint.
  let p = 0
  let o = 0
  for (;;) {
    let pEnd = pattern.indexOf(':', p)
    if (pEnd === -1) pEnd = pattern.length
    let oEnd = other.indexOf(':', o)
    if (oEnd === -1) oEnd = other.length
    if (pEnd - p !== 1 || pattern.charCodeAt(p) !== STAR) {
      const n = pEnd - p
      if (n !== oEnd - o) return false
      for (let k = 0; k < n; k++) if (pattern.charCodeAt(p + k) !== other.charCodeAt(o + k)) return false
    }
    const pLast = pEnd === pattern.length
    const oLast = oEnd === other.length
    if (pLast || oLast) return pLast && oLast
    p = pEnd + 1
    o = oEnd + 1
  }
}

/** Does any grant pattern cover `scope`? */
export function grantsCover(grants: readonly string[], scope: string): boolean {
  for (const g of grants) if (covers(g, scope)) return true
  return false
}

/** Attenuation: every pattern in `a` is covered by some pattern in `b`. */
export function isSubset(a: readonly string[], b: readonly string[]): boolean {
  for (const s of a) if (!grantsCover(b, s)) return false
  return true
}

/** The scopes of `requested` that `grants` do not cover (for error details). */
export function uncovered(requested: readonly string[], grants: readonly string[]): string[] {
  return requested.filter((s) => !grantsCover(grants, s))
}

/**
 * A required-scope template: literal segments plus `{argName}` placeholders that take a
 * tool argument's value. Compiled once, filled per call. An argument value that is not a
 * single valid segment (contains `:`, is `*`, empty, too long, not a string or number)
 * fails with `ERR_SCOPE_INVALID`: an argument can never widen or add segments.
 */
export interface ScopeTemplate {
  readonly source: string
  readonly placeholders: readonly string[]
  fill(args: Readonly<Record<string, unknown>> | undefined): string
}

const PLACEHOLDER = /^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}$/

export function compileScopeTemplate(source: string): ScopeTemplate {
  const segments = source.split(':')
  if (segments.length < 1 || segments.length > MAX_SCOPE_SEGMENTS) {
    throw new ScopeInvalid('scope template must have 1-16 segments', { details: { rule: 'template' } })
  }
  const parts: Array<{ literal: string } | { arg: string }> = []
  const placeholders: string[] = []
  for (const seg of segments) {
    const m = PLACEHOLDER.exec(seg)
    if (m) {
      parts.push({ arg: m[1] as string })
      placeholders.push(m[1] as string)
    } else if (isScopeSegment(seg)) {
      parts.push({ literal: seg })
    } else {
      throw new ScopeInvalid('scope template segments are literal segments or {argName}; `*` is not allowed', {
        details: { rule: 'template' },
      })
    }
  }
  if (placeholders.length === 0) {
    return Object.freeze({ source, placeholders, fill: () => source })
  }
  return Object.freeze({
    source,
    placeholders,
    fill(args: Readonly<Record<string, unknown>> | undefined): string {
      let out = ''
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i] as { literal: string } | { arg: string }
        let seg: string
        if ('literal' in part) {
          seg = part.literal
        } else {
          const v = args !== undefined && Object.prototype.hasOwnProperty.call(args, part.arg) ? args[part.arg] : undefined
          const s = typeof v === 'string' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined
          if (s === undefined || !isScopeSegment(s)) {
            throw new ScopeInvalid(`argument "${part.arg}" must be a single scope segment (1-64 chars of [A-Za-z0-9._@/+-])`, {
              details: { rule: 'template-argument', argument: part.arg },
            })
          }
          seg = s
        }
        out = i === 0 ? seg : `${out}:${seg}`
      }
      return out
    },
  })
}
