/**
 * Strings that came from outside (an agent's reason, an id, a tool name, a remote key id) are
 * data. Before they reach a terminal, a log line or a prompt, every character that could move
 * the cursor, erase a line, change colours or reorder text is written as a visible escape:
 * C0 and C1 controls and DEL (ECMA-48 introduces control sequences with them), and Unicode
 * format characters: bidirectional embeddings, overrides and isolates (UAX #9, the "Trojan
 * Source" class, CVE-2021-42574), zero-width characters, the soft hyphen and the BOM.
 */

/**
 * Characters never written raw: controls (Cc: C0, DEL, C1), format characters (Cf: bidi
 * controls, zero-width characters, soft hyphen, BOM, tag characters), line and paragraph
 * separators, lone surrogates, and every Default_Ignorable_Code_Point (fillers and variation
 * selectors that render as nothing; Unicode Standard section 5.21).
 */
export const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Default_Ignorable_Code_Point}]/u

const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, 'gu')

/** True when `s` holds a character {@link printable} would escape. */
export function hasUnprintable(s: string): boolean {
  return UNPRINTABLE.test(s)
}

/**
 * `s` with every unprintable character written as `\u{hex}` (and backslashes doubled, so an
 * escape in the output is always ours), cut to `max` characters with an ellipsis.
 */
export function printable(s: unknown, max = 512): string {
  const text = typeof s === 'string' ? s : String(s)
  const cut = text.length > max ? `${text.slice(0, max)}…` : text
  return cut.replace(/\\/g, '\\\\').replace(UNPRINTABLE_ALL, (c) => `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`)
}

/**
 * `s` with every unprintable character written as `\u{hex}`, backslashes left alone: for
 * stored records (the audit trail) and terminal lines whose escapes need not round-trip. With
 * `keepNewlines`, `\n` stays (multi-line text shown as lines).
 */
export function withoutUnprintable(s: string, o: { readonly keepNewlines?: boolean } = {}): string {
  if (!UNPRINTABLE.test(s)) return s
  return s.replace(UNPRINTABLE_ALL, (c) => (o.keepNewlines === true && c === '\n' ? c : `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`))
}

/**
 * JSON text with every unprintable character written as a JSON `\uXXXX` escape (UTF-16 code
 * units), so the text still parses to the same value: `JSON.stringify` escapes C0 controls
 * but leaves DEL, C1 and format characters raw. With `keepNewlines`, `\n` stays (the
 * indentation of pretty-printed JSON; a newline inside a string is already `\n`).
 */
export function jsonWithoutUnprintable(json: string, o: { readonly keepNewlines?: boolean } = {}): string {
  if (!UNPRINTABLE.test(json)) return json
  return json.replace(UNPRINTABLE_ALL, (c) =>
    o.keepNewlines === true && c === '\n'
      ? c
      : Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''),
  )
}
