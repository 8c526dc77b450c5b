/**
 * Option misuse: every public factory refuses bad options with one ERR_CONFIG_INVALID whose
 * message names the option path and never a secret value.
 */
import { expect } from 'vitest'

/** A key name that would forge a log line and a terminal colour if echoed raw. */
export const HOSTILE_KEY = 'x\n[fake] ERR_NONE ok\u001b[31m\u202e'

export type Misuse = {
  /** The option path the message must name (as printed: `a.b`, `a[0]`, `["odd key"]`). */
  path: string
  /** Values that must not appear anywhere in the message or details. */
  secrets?: readonly string[]
}

/**
 * Call `fn` (sync or async) and assert it throws ERR_CONFIG_INVALID naming `path`, with no
 * secret, no raw control or bidi character in the message. Returns the error.
 */
export async function expectOptionMisuse(fn: () => unknown, misuse: Misuse): Promise<Error & { code: string; details?: unknown }> {
  let err: unknown
  try {
    await fn()
  } catch (e) {
    err = e
  }
  expect(err, `expected ERR_CONFIG_INVALID at ${misuse.path}`).toMatchObject({ code: 'ERR_CONFIG_INVALID' })
  const e = err as Error & { code: string; details?: { path?: string; rule?: string } }
  expect(e.message).toContain(misuse.path)
  expect(e.message).toMatch(/invalid options/)
  // eslint-disable-next-line no-control-regex
  expect(e.message.replace(/\n {2}- /g, ' ')).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/)
  const seen = `${e.message}\n${JSON.stringify(e.details ?? {})}\n${e.stack ?? ''}`
  for (const s of misuse.secrets ?? []) expect(seen, 'a secret value is echoed').not.toContain(s)
  return e
}

/** The escaped form of {@link HOSTILE_KEY} as a path segment in a message. */
export const HOSTILE_KEY_PATH = '["x\\u000a[fake] ERR_NONE ok\\u001b[31m\\u202e"]'
