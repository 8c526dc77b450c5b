/**
 * The hash chain of the audit trail: how one event is built and hashed (`./verify.ts`
 * checks a sequence of lines). Pure: no file, stream or timer here (see `./index.ts` for the I/O).
 *
 * One line of the trail is the canonical JSON (keys sorted, see `src/lib/hash.ts`) of
 * {@link AuditEvent} without `hash`, with `"hash"` appended. `hash` is SHA-256 (or
 * HMAC-SHA-256 when a key is configured) of that canonical JSON, base64url. `prev` is the
 * previous event's `hash` in the same chain ({@link GENESIS_PREV} for `seq` 0).
 */
import { createHmac, hash } from 'node:crypto'
import { z } from 'zod'
import { optionProblem } from '../lib/options.js'
import type { AuditEventInput } from './types.js'
import { withoutUnprintable } from '../policy/printable.js'

/** The format version written in every event (`v`). */
export const AUDIT_FORMAT_VERSION = 1

/** `prev` of the first event of a chain: 32 zero bytes, base64url. */
export const GENESIS_PREV = Buffer.alloc(32).toString('base64url')

/** One event as written: the decision fields plus the chain fields. */
export interface AuditEvent extends AuditEventInput {
  readonly v: typeof AUDIT_FORMAT_VERSION
  /** The chain this event belongs to: one per audit log instance (so one per process). */
  readonly chainId: string
  /** 0, 1, 2, ... within the chain, no gaps. */
  readonly seq: number
  /** ISO 8601 time of the decision. */
  readonly time: string
  /** `hash` of the previous event of this chain. */
  readonly prev: string
  /** Hash of this event's canonical JSON (without `hash`). */
  readonly hash: string
}

/** Where a chain stands: enough to anchor it somewhere an attacker cannot write. */
export interface AuditHead {
  readonly chainId: string
  /** Sequence number of the last event (-1 before the first). */
  readonly seq: number
  readonly hash: string
}

/** What `seal` and drop notices carry in `note`. */
export const SEAL_NOTE = 'seal'

export type AuditDigest = (canonical: string) => string

/** The HMAC key is at least 16 bytes: a shorter one is guessable. Its value is never echoed. */
const MIN_HMAC_KEY_BYTES = 16
/** The `hmacKey` option of the log and of the trail verifier. */
export const HmacKeySchema = z.union(
  [z.string().min(MIN_HMAC_KEY_BYTES), z.instanceof(Uint8Array).refine((k) => k.byteLength >= MIN_HMAC_KEY_BYTES)],
  { error: `expected a string or bytes of at least ${MIN_HMAC_KEY_BYTES} bytes` },
)

/** SHA-256, or HMAC-SHA-256 with `key` (an attacker without the key cannot re-hash an edited chain). */
export function auditDigest(key?: string | Uint8Array): AuditDigest {
  // The one-shot `hash` costs half of a Hash object per event.
  if (key === undefined) return (s) => hash('sha256', s, 'base64url')
  // The factories check this with HmacKeySchema; refused here too, so no caller can weaken it.
  if (!HmacKeySchema.safeParse(key).success) throw optionProblem('audit', ['hmacKey'], `expected at least ${MIN_HMAC_KEY_BYTES} bytes`)
  const k = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key)
  return (s) => createHmac('sha256', k).update(s).digest('base64url')
}

// ---- sanitizing ------------------------------------------------------------------------

const MAX_STRING = 256
const MAX_NOTE = 512
const MAX_LIST = 32
/** A compact JWS/JWT anywhere in a string: `eyJ` is base64url of `{"`. */
const JWS_LIKE = /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g
const ACTIONS = new Set([
  'mint',
  'exchange',
  'spawn',
  'tool_call',
  'agent_call',
  'egress',
  'revoke',
  'trust_change',
  'key',
  'mode',
  'audit',
])

function clean(v: unknown, max = MAX_STRING): string | undefined {
  if (v === undefined || v === null) return undefined
  let s = typeof v === 'string' ? v : String(v)
  // Defence in depth: the kernel never hands us a token, but an application's `note` might.
  if (s.length >= 16 && s.includes('eyJ')) s = s.replace(JWS_LIKE, '[redacted-token]')
  // Caller-chosen strings (an id, a tool name, a reason) never carry a raw control or bidi
  // character into the trail, whatever later prints it.
  s = withoutUnprintable(s)
  return s.length > max ? `${s.slice(0, max)}...` : s
}

function cleanList(v: unknown): string[] | undefined {
  if (!Array.isArray(v)) return undefined
  const out: string[] = []
  for (let i = 0; i < v.length && i < MAX_LIST; i++) out.push(clean(v[i]) ?? '')
  return out
}

/**
 * Copy the known fields of an input, bounded and with anything token-shaped redacted.
 * Unknown members (a stray `args`, a `token`) are dropped rather than written.
 */
export function sanitizeAuditInput(e: AuditEventInput, internal = false): Record<string, unknown> {
  const out: Record<string, unknown> = {
    action: ACTIONS.has(e.action) ? e.action : (clean(e.action, 32) ?? 'unknown'),
    decision: e.decision === 'allow' ? 'allow' : 'deny',
  }
  if (e.code !== undefined) out.code = clean(e.code, 64)
  if (e.origin !== undefined) out.origin = clean(e.origin)
  if (e.destination !== undefined) out.destination = clean(e.destination)
  if (e.capability !== undefined) out.capability = cleanList(e.capability)
  if (e.tool !== undefined) out.tool = clean(e.tool)
  if (e.jti !== undefined) out.jti = clean(e.jti, 64)
  if (e.trustLevel !== undefined) out.trustLevel = clean(e.trustLevel, 8)
  if (e.context !== undefined && typeof e.context === 'object' && e.context !== null) {
    // Members in sorted order, as canonical JSON writes them.
    out.context = { session_id: clean(e.context.session_id), task_id: clean(e.context.task_id), user_id: clean(e.context.user_id) }
  }
  if (e.chain !== undefined) out.chain = cleanList(e.chain)
  if (e.actors !== undefined) out.actors = cleanList(e.actors)
  if (e.argsHash !== undefined) out.argsHash = clean(e.argsHash, 64)
  if (typeof e.enforced === 'boolean') out.enforced = e.enforced
  if (e.note !== undefined) out.note = clean(e.note, MAX_NOTE)
  // Only the log itself writes `audit` events: an application cannot forge a seal mid-chain.
  if (out.action === 'audit' && !internal) out.note = `application: ${String(out.note ?? '')}`
  return out
}

// The canonical JSON of a sanitized event, written member by member in `canonicalJson`'s
// order (keys sorted by UTF-16 code units): the same bytes as the generic function at about
// a third of its cost on the call path. A property test holds the two equal.
const q = JSON.stringify

function strList(v: unknown): string {
  const a = v as readonly string[]
  let o = '['
  for (let i = 0; i < a.length; i++) o += (i === 0 ? '' : ',') + q(a[i])
  return `${o}]`
}

function contextJson(v: unknown): string {
  const c = v as Record<string, unknown>
  let o = ''
  if (c.session_id !== undefined) o += `,"session_id":${q(c.session_id)}`
  if (c.task_id !== undefined) o += `,"task_id":${q(c.task_id)}`
  if (c.user_id !== undefined) o += `,"user_id":${q(c.user_id)}`
  return `{${o.slice(1)}}`
}

/**
 * `canonicalJson(body)` for a body made of {@link sanitizeAuditInput} plus the chain fields
 * (`action`, `decision`, `chainId`, `prev`, `seq`, `time`, `v` always present).
 */
export function canonicalEvent(b: Record<string, unknown>): string {
  let o = '{"action":' + q(b.action)
  if (b.actors !== undefined) o += ',"actors":' + strList(b.actors)
  if (b.argsHash !== undefined) o += ',"argsHash":' + q(b.argsHash)
  if (b.capability !== undefined) o += ',"capability":' + strList(b.capability)
  if (b.chain !== undefined) o += ',"chain":' + strList(b.chain)
  o += ',"chainId":' + q(b.chainId)
  if (b.code !== undefined) o += ',"code":' + q(b.code)
  if (b.context !== undefined) o += ',"context":' + contextJson(b.context)
  o += ',"decision":' + q(b.decision)
  if (b.destination !== undefined) o += ',"destination":' + q(b.destination)
  if (b.enforced !== undefined) o += ',"enforced":' + q(b.enforced)
  if (b.jti !== undefined) o += ',"jti":' + q(b.jti)
  if (b.note !== undefined) o += ',"note":' + q(b.note)
  if (b.origin !== undefined) o += ',"origin":' + q(b.origin)
  o += ',"prev":' + q(b.prev) + ',"seq":' + q(b.seq) + ',"time":' + q(b.time)
  if (b.tool !== undefined) o += ',"tool":' + q(b.tool)
  if (b.trustLevel !== undefined) o += ',"trustLevel":' + q(b.trustLevel)
  return o + ',"v":' + q(b.v) + '}'
}

/** The written line: the canonical JSON with `hash` appended as its last member, and a newline. */
export function lineOf(canonical: string, hash: string): string {
  // The canonical JSON always ends with `}`.
  return `${canonical.slice(0, -1)},"hash":"${hash}"}\n`
}

/**
 * Build the next event of a chain: its canonical JSON (without `hash`) and its hash, the
 * new head. `body` is a sanitized input (it is completed in place).
 */
export function chainCanonical(
  body: Record<string, unknown>,
  chainId: string,
  seq: number,
  prev: string,
  time: string,
  digest: AuditDigest,
): { canonical: string; hash: string } {
  body.v = AUDIT_FORMAT_VERSION
  body.chainId = chainId
  body.seq = seq
  body.time = time
  body.prev = prev
  const canonical = canonicalEvent(body)
  return { canonical, hash: digest(canonical) }
}

/** {@link chainCanonical}, as the line to write (with its trailing newline). */
export function chainEvent(
  body: Record<string, unknown>,
  chainId: string,
  seq: number,
  prev: string,
  time: string,
  digest: AuditDigest,
): { line: string; hash: string } {
  const { canonical, hash } = chainCanonical(body, chainId, seq, prev, time, digest)
  return { line: lineOf(canonical, hash), hash }
}
