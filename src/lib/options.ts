/**
 * Options of every public factory are checked once, when the object is built, against a
 * strict zod schema: an unknown key (a typo such as `trustlevel`), a wrong type or a value
 * out of bounds throws one `ERR_CONFIG_INVALID` that names the factory and lists every problem
 * with its path and what is expected. A value is never echoed (options hold keys, tokens and
 * passwords); only key names are, capped and escaped so a hostile key cannot forge lines or
 * terminal sequences in a log. Nothing is checked per call.
 */
import type { KeyObject, webcrypto } from 'node:crypto'
import { z } from 'zod'
import { ConfigInvalid } from '../errors.js'

/** At most this many problems are listed; the rest are counted. */
const MAX_LISTED = 8
/** A key name is echoed up to this many characters. */
const MAX_KEY = 48
/** The whole message stays below this many characters. */
const MAX_MESSAGE = 2048

/**
 * A user-supplied key as it may appear in a message: at most {@link MAX_KEY} characters,
 * everything outside printable ASCII (controls, line separators, bidirectional overrides)
 * as a `\uXXXX` escape, quotes and backslashes escaped.
 */
export function echoKey(key: string): string {
  let out = ''
  for (const ch of key.length > MAX_KEY ? key.slice(0, MAX_KEY) : key) {
    const c = ch.codePointAt(0) ?? 0
    if (ch === '"' || ch === '\\') out += `\\${ch}`
    else if (c < 0x20 || c > 0x7e) out += ch.split('').map(u16).join('')
    else out += ch
  }
  return key.length > MAX_KEY ? `${out}…` : out
}

function u16(ch: string): string {
  return `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`
}

/** `a.b[0]["we\"ird key"]`: identifiers dotted, indexes and other keys bracketed and escaped. */
export function optionPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (typeof seg === 'symbol') out += '[symbol]'
    else if (/^[A-Za-z_$][\w$]{0,47}$/.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `["${echoKey(seg)}"]`
  }
  return out
}

/** The keys an object schema at `path` accepts, when the schema there is a plain object. */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let s: unknown = schema
  const unwrap = (): void => {
    for (let i = 0; i < 8; i++) {
      const def = (s as { _zod?: { def?: { type?: string; innerType?: unknown; in?: unknown } } })._zod?.def
      if (def === undefined) return
      if (def.innerType !== undefined) s = def.innerType
      else if (def.type === 'pipe' && def.in !== undefined) s = def.in
      else return
    }
  }
  for (const seg of path) {
    unwrap()
    const def = (s as { _zod?: { def?: { type?: string; shape?: Record<string, unknown>; element?: unknown } } })._zod?.def
    if (def?.type === 'object' && typeof seg === 'string' && def.shape !== undefined) s = def.shape[seg]
    else if (def?.type === 'array' && typeof seg === 'number') s = def.element
    else return undefined
  }
  unwrap()
  const def = (s as { _zod?: { def?: { type?: string; shape?: Record<string, unknown> } } })._zod?.def
  return def?.type === 'object' && def.shape !== undefined ? Object.keys(def.shape) : undefined
}

type Problem = { path: string; text: string }

function problems(schema: z.ZodType, issues: readonly z.core.$ZodIssue[]): Problem[] {
  const out: Problem[] = []
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys(schema, issue.path)
      const hint = known === undefined || known.length === 0 ? '' : ` (expected one of: ${known.join(', ')})`
      for (const key of issue.keys) out.push({ path: optionPath([...issue.path, key]), text: `unknown option${hint}` })
    } else if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) {
      out.push({ path: optionPath(issue.path), text: `is required (expected ${issue.expected})` })
    } else {
      // zod's own messages name the expected type or bound, never the value (reportInput is off).
      out.push({ path: optionPath(issue.path), text: issue.message.replace(/^Invalid input: /, '') })
    }
  }
  return out
}

/**
 * Parse `input` with `schema`, or throw `ConfigInvalid` naming `factory`, each offending
 * option path and what it expects. `undefined` input parses as `{}` (options omitted).
 * The error's `details` carry `rule: 'options'`, the number of problems and the first path.
 */
export function parseOptions<S extends z.ZodType>(factory: string, schema: S, input: unknown): z.output<S> {
  const r = schema.safeParse(input === undefined ? {} : input, { reportInput: false })
  if (r.success) return r.data
  throw misuse(factory, problems(schema, r.error.issues))
}

/**
 * The error {@link parseOptions} throws, for a problem only found once the options parsed
 * (a certificate that names another workload, material a schema cannot read): same code,
 * same message shape, `text` says what is expected and never holds the value.
 */
export function optionProblem(factory: string, path: readonly PropertyKey[], text: string, cause?: unknown): ConfigInvalid {
  return misuse(factory, [{ path: optionPath(path), text }], cause)
}

function misuse(factory: string, list: readonly Problem[], cause?: unknown): ConfigInvalid {
  const lines = list.slice(0, MAX_LISTED).map((p) => `  - ${p.path === '' ? 'options' : p.path}: ${p.text}`)
  if (list.length > MAX_LISTED) lines.push(`  - and ${list.length - MAX_LISTED} more`)
  let message = `${factory}: invalid options:\n${lines.join('\n')}`
  if (message.length > MAX_MESSAGE) message = `${message.slice(0, MAX_MESSAGE)}…`
  return new ConfigInvalid(message, {
    details: { rule: 'options', issues: list.length, path: list[0]?.path ?? '' },
    ...(cause === undefined ? {} : { cause }),
  })
}

/** A function-valued option. */
export function fn<T extends (...args: never[]) => unknown = (...args: never[]) => unknown>(): z.ZodType<T> {
  return z.custom<T>((v) => typeof v === 'function', { message: 'expected a function' })
}

/** An object option that must offer these methods (a store, a verifier, an audit log): kept as is, never cloned. */
export function withMethods<T extends object>(...methods: string[]): z.ZodType<T> {
  return z.custom<T>(
    (v) =>
      (typeof v === 'object' || typeof v === 'function') &&
      v !== null &&
      methods.every((m) => typeof (v as Record<string, unknown>)[m] === 'function'),
    { message: `expected an object with ${methods.map((m) => `${m}()`).join(', ')}` },
  )
}

/** An instance of `ctor` (a class the option must come from), kept as is. */
export function instanceOf<T>(ctor: abstract new (...args: never[]) => T, what: string): z.ZodType<T> {
  return z.custom<T>((v) => v instanceof ctor, { message: `expected ${what}` })
}

/** A WebCrypto `CryptoKey` or a node `KeyObject` (a private or public key), kept as is, never echoed. */
export function cryptoKey<T = webcrypto.CryptoKey | KeyObject>(): z.ZodType<T> {
  return z.custom<T>(
    (v) => {
      if (typeof v !== 'object' || v === null) return false
      const tag = Object.prototype.toString.call(v)
      if (tag === '[object CryptoKey]') return true
      const k = v as { type?: unknown; asymmetricKeyType?: unknown; export?: unknown }
      return (k.type === 'private' || k.type === 'public' || k.type === 'secret') && typeof k.export === 'function'
    },
    { message: 'expected a CryptoKey or KeyObject' },
  )
}

/** A string or Buffer/Uint8Array (PEM or DER material such as a TLS key or certificate). */
export const pemLike = z.union([z.string(), z.instanceof(Uint8Array)], { error: 'expected a string or Buffer' })
