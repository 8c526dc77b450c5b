/**
 * Options of every public factory are checked once, when the object is built, against a
 * strict zod schema: an unknown key (a typo such as `trustlevel`), a wrong type or a value
 * out of bounds throws one `ERR_CONFIG_INVALID` that lists every problem with its path and
 * never echoes a value (options hold credentials). Nothing is checked per call.
 */
import { z } from 'zod'
import { ConfigInvalid } from '../errors.js'

/** Parse `input` with `schema`, or throw `ConfigInvalid` naming `factory` and every problem. */
export function parseOptions<S extends z.ZodType>(factory: string, schema: S, input: unknown): z.output<S> {
  const r = schema.safeParse(input === undefined ? {} : input, { reportInput: false })
  if (r.success) return r.data
  const first = r.error.issues[0]
  throw new ConfigInvalid(`${factory}: invalid options:\n${z.prettifyError(r.error)}`, {
    details: { rule: 'options', issues: r.error.issues.length, path: first === undefined ? '' : first.path.join('.').slice(0, 128) },
  })
}

/** A function-valued option. */
export function fn<T extends (...args: never[]) => unknown = (...args: never[]) => unknown>(): z.ZodType<T> {
  return z.custom<T>((v) => typeof v === 'function', { message: 'must be a function' })
}

/** An object option that must offer these methods (a store, a verifier, an audit log): kept as is, never cloned. */
export function withMethods<T extends object>(...methods: string[]): z.ZodType<T> {
  return z.custom<T>(
    (v) => typeof v === 'object' && v !== null && methods.every((m) => typeof (v as Record<string, unknown>)[m] === 'function'),
    { message: `must be an object with ${methods.map((m) => `${m}()`).join(', ')}` },
  )
}
