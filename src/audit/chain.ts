/**
 * The hash chain of the audit trail: how one event is built and hashed, and how a sequence
 * of lines is checked. Pure: no file, stream or timer here (see `./index.ts` for the I/O).
 *
 * One line of the trail is the canonical JSON (keys sorted, see `src/lib/hash.ts`) of
 * {@link AuditEvent} without `hash`, with `"hash"` appended. `hash` is SHA-256 (or
 * HMAC-SHA-256 when a key is configured) of that canonical JSON, base64url. `prev` is the
 * previous event's `hash` in the same chain ({@link GENESIS_PREV} for `seq` 0).
 */
import { createHmac, hash } from 'node:crypto'
import { canonicalJson } from '../lib/hash.js'
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

/** SHA-256, or HMAC-SHA-256 with `key` (an attacker without the key cannot re-hash an edited chain). */
export function auditDigest(key?: string | Uint8Array): AuditDigest {
  // The one-shot `hash` costs half of a Hash object per event.
  if (key === undefined) return (s) => hash('sha256', s, 'base64url')
  if ((typeof key === 'string' && key.length < 16) || (typeof key !== 'string' && key.byteLength < 16)) {
    throw new TypeError('the audit hmacKey must be at least 16 bytes')
  }
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

// ---- verification ----------------------------------------------------------------------

/**
 * - `edited`: an event's content does not match its hash, or its successor's `prev` does not
 *   match it (the event was changed and re-hashed).
 * - `deleted`: a gap in `seq` (including a chain that does not start at 0).
 * - `inserted`: a `seq` seen again, or an event after the chain's seal.
 * - `reordered`: a missing `seq` turns up later in the file.
 * - `truncated`: the file ends inside a line, a chain required to be sealed is not, or an
 *   anchor names a later event than the file has.
 * - `malformed`: a line that is not an audit event.
 */
export type AuditBreakKind = 'edited' | 'deleted' | 'inserted' | 'reordered' | 'truncated' | 'malformed'

export interface AuditBreak {
  readonly kind: AuditBreakKind
  /** 1-based line number where the break was detected. */
  readonly line: number
  readonly chainId?: string
  /** The sequence number at issue (the missing or the offending one). */
  readonly seq?: number
  /** Another line involved (the event whose successor proved it changed, a seq's first occurrence). */
  readonly relatedLine?: number
  readonly message: string
}

export interface AuditChainReport {
  readonly chainId: string
  readonly events: number
  readonly firstSeq: number
  /** Last seq of the verified prefix. */
  readonly lastSeq: number
  /** Hash of the last verified event: compare with an anchor kept elsewhere. */
  readonly head: string
  /** The chain ends with its writer's seal (a clean `close()`). */
  readonly sealed: boolean
  readonly break?: AuditBreak
}

export interface AuditVerification {
  /** No break anywhere (and every required seal and anchor present). */
  readonly ok: boolean
  readonly lines: number
  readonly events: number
  readonly chains: readonly AuditChainReport[]
  /** The earliest break in the file (by line), if any. */
  readonly firstBreak?: AuditBreak
  /** The first break of each broken chain, and file-level breaks, by line. */
  readonly breaks: readonly AuditBreak[]
}

export interface AuditVerifyOptions {
  /**
   * Treat a chain without a seal as truncated. Use it for the files of processes that have
   * exited cleanly (a running writer's chain is open by nature). Default false.
   */
  readonly requireSealed?: boolean
  /**
   * Heads recorded elsewhere (another sink, a ticket, a WORM store). A chain that ends
   * before its anchor, or whose event at the anchor's seq has another hash, is reported;
   * an anchored chain absent from the trail is reported as deleted.
   */
  readonly anchors?: readonly AuditHead[]
  /** Accept chains whose first event is not seq 0 (a trimmed Redis stream). Default false. */
  readonly allowTrimmedStart?: boolean
  /** The key the writer used (`hmacKey`), when the chain is keyed. */
  readonly hmacKey?: string | Uint8Array
}

interface ChainState {
  readonly chainId: string
  events: number
  firstSeq: number
  lastSeq: number
  expected: number
  head: string
  lastLine: number
  sealed: boolean
  brk: Mutable<AuditBreak> | undefined
  missing: { from: number; to: number } | undefined
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

const CHAIN_ID = /^[A-Za-z0-9._:@/-]{1,128}$/
const HASH = /^[A-Za-z0-9_-]{43}$/

function isEventShape(v: unknown): v is AuditEvent {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const e = v as Record<string, unknown>
  return (
    e.v === AUDIT_FORMAT_VERSION &&
    typeof e.chainId === 'string' &&
    CHAIN_ID.test(e.chainId) &&
    Number.isSafeInteger(e.seq) &&
    (e.seq as number) >= 0 &&
    typeof e.time === 'string' &&
    typeof e.prev === 'string' &&
    HASH.test(e.prev) &&
    typeof e.hash === 'string' &&
    HASH.test(e.hash) &&
    typeof e.action === 'string' &&
    (e.decision === 'allow' || e.decision === 'deny')
  )
}

/**
 * Incremental verifier: feed lines in file order with {@link push}, then {@link finish}.
 * Memory is per chain, not per event, so a multi-gigabyte trail streams through.
 * Several chains (several writers on one file) are checked independently.
 */
export class AuditTrailVerifier {
  readonly #chains = new Map<string, ChainState>()
  readonly #fileBreaks: AuditBreak[] = []
  readonly #digest: AuditDigest
  readonly #options: AuditVerifyOptions
  readonly #anchors = new Map<string, AuditHead[]>()
  #lines = 0
  #events = 0

  constructor(options: AuditVerifyOptions = {}) {
    this.#options = options
    this.#digest = auditDigest(options.hmacKey)
    for (const a of options.anchors ?? []) {
      const list = this.#anchors.get(a.chainId) ?? []
      list.push(a)
      this.#anchors.set(a.chainId, list)
    }
  }

  /**
   * One line, without its newline. `complete` is false for a last line that had no
   * newline: the file was cut inside a write.
   */
  push(text: string, complete = true): void {
    const lineNo = ++this.#lines
    if (!complete) {
      this.#fileBreaks.push({
        kind: 'truncated',
        line: lineNo,
        message: `line ${lineNo} is incomplete (no newline): the file was cut inside an event`,
      })
      return
    }
    if (text.trim() === '') return
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      this.#fileBreaks.push({ kind: 'malformed', line: lineNo, message: `line ${lineNo} is not JSON` })
      return
    }
    if (!isEventShape(parsed)) {
      this.#fileBreaks.push({
        kind: 'malformed',
        line: lineNo,
        message: `line ${lineNo} is not an audit event of format v${AUDIT_FORMAT_VERSION}`,
      })
      return
    }
    this.#events++
    this.#event(parsed, lineNo)
  }

  #event(e: AuditEvent, line: number): void {
    let c = this.#chains.get(e.chainId)
    const fresh = c === undefined
    if (c === undefined) {
      c = {
        chainId: e.chainId,
        events: 0,
        firstSeq: e.seq,
        lastSeq: -1,
        expected: e.seq,
        head: '',
        lastLine: 0,
        sealed: false,
        brk: undefined,
        missing: undefined,
      }
      this.#chains.set(e.chainId, c)
    }
    c.events++
    if (c.brk !== undefined) {
      // Only the first break per chain is reported; a later line may still explain it better.
      const m = c.missing
      if (c.brk.kind === 'deleted' && m !== undefined && e.seq >= m.from && e.seq <= m.to) {
        c.brk.kind = 'reordered'
        c.brk.relatedLine = line
        c.brk.message = `chain ${e.chainId}: seq ${e.seq} is out of order (expected at line ${c.brk.line}, found at line ${line})`
      }
      return
    }
    const { hash, ...rest } = e
    const at = { line, chainId: e.chainId, seq: e.seq }
    if (this.#digest(canonicalJson(rest)) !== hash) {
      c.brk = {
        ...at,
        kind: 'edited',
        message: `chain ${e.chainId}: the event at line ${line} (seq ${e.seq}) does not match its hash: it was edited`,
      }
      return
    }
    if (fresh) {
      if (e.seq !== 0 && this.#options.allowTrimmedStart !== true) {
        c.brk = {
          ...at,
          kind: 'deleted',
          seq: 0,
          message: `chain ${e.chainId} starts at seq ${e.seq} (line ${line}): events 0-${e.seq - 1} are missing`,
        }
        c.missing = { from: 0, to: e.seq - 1 }
        return
      }
      if (e.seq === 0 && e.prev !== GENESIS_PREV) {
        c.brk = {
          ...at,
          kind: 'edited',
          message: `chain ${e.chainId}: its first event (line ${line}) does not start from the genesis hash`,
        }
        return
      }
    } else if (c.sealed) {
      c.brk = { ...at, kind: 'inserted', message: `chain ${e.chainId}: an event (line ${line}, seq ${e.seq}) follows the chain's seal` }
      return
    } else if (e.seq === c.expected) {
      if (e.prev !== c.head) {
        c.brk = {
          ...at,
          kind: 'edited',
          seq: e.seq - 1,
          relatedLine: c.lastLine,
          message: `chain ${e.chainId}: line ${line} (seq ${e.seq}) does not link to line ${c.lastLine} (seq ${e.seq - 1}): one of the two was replaced`,
        }
        return
      }
    } else if (e.seq > c.expected) {
      c.brk = {
        ...at,
        kind: 'deleted',
        seq: c.expected,
        relatedLine: c.lastLine,
        message: `chain ${e.chainId}: seq ${c.expected}${e.seq - 1 > c.expected ? `-${e.seq - 1}` : ''} missing between line ${c.lastLine} and line ${line}`,
      }
      c.missing = { from: c.expected, to: e.seq - 1 }
      return
    } else {
      c.brk = {
        ...at,
        kind: 'inserted',
        message: `chain ${e.chainId}: line ${line} repeats seq ${e.seq} (expected ${c.expected}): an event was inserted or duplicated`,
      }
      return
    }
    // The link holds.
    for (const a of this.#anchors.get(e.chainId) ?? []) {
      if (a.seq === e.seq && a.hash !== e.hash) {
        c.brk = {
          ...at,
          kind: 'edited',
          message: `chain ${e.chainId}: the event at line ${line} (seq ${e.seq}) differs from its anchor: the chain was rewritten`,
        }
        return
      }
    }
    c.expected = e.seq + 1
    c.lastSeq = e.seq
    c.head = e.hash
    c.lastLine = line
    if (e.action === 'audit' && e.note === SEAL_NOTE) c.sealed = true
  }

  finish(): AuditVerification {
    const breaks: AuditBreak[] = [...this.#fileBreaks]
    const chains: AuditChainReport[] = []
    for (const c of this.#chains.values()) {
      if (c.brk === undefined && this.#options.requireSealed === true && !c.sealed) {
        c.brk = {
          kind: 'truncated',
          line: c.lastLine,
          chainId: c.chainId,
          seq: c.lastSeq + 1,
          message: `chain ${c.chainId} ends at seq ${c.lastSeq} (line ${c.lastLine}) without its seal: its tail was cut or its writer did not close`,
        }
      }
      if (c.brk === undefined) {
        for (const a of this.#anchors.get(c.chainId) ?? []) {
          if (a.seq > c.lastSeq) {
            c.brk = {
              kind: 'truncated',
              line: c.lastLine,
              chainId: c.chainId,
              seq: c.lastSeq + 1,
              message: `chain ${c.chainId} ends at seq ${c.lastSeq} but its anchor names seq ${a.seq}: the tail was cut`,
            }
            break
          }
        }
      }
      if (c.brk !== undefined) breaks.push(c.brk)
      chains.push({
        chainId: c.chainId,
        events: c.events,
        firstSeq: c.firstSeq,
        lastSeq: c.lastSeq,
        head: c.head,
        sealed: c.sealed,
        ...(c.brk === undefined ? {} : { break: { ...c.brk } }),
      })
    }
    if (this.#options.requireSealed === true && this.#chains.size === 0 && this.#anchors.size === 0)
      breaks.push({
        kind: 'truncated',
        line: 0,
        seq: 0,
        message: 'the trail holds no chain at all: it was emptied, or nothing was ever written to it',
      })
    for (const [chainId, anchors] of this.#anchors) {
      if (this.#chains.has(chainId)) continue
      breaks.push({
        kind: 'deleted',
        line: 0,
        chainId,
        seq: 0,
        message: `anchored chain ${chainId} (through seq ${Math.max(...anchors.map((a) => a.seq))}) is not in the trail`,
      })
    }
    breaks.sort((a, b) => a.line - b.line)
    return {
      ok: breaks.length === 0,
      lines: this.#lines,
      events: this.#events,
      chains,
      breaks,
      ...(breaks[0] === undefined ? {} : { firstBreak: breaks[0] }),
    }
  }
}

/** Verify lines already in memory (each without its newline). */
export function verifyAuditLines(lines: Iterable<string>, options: AuditVerifyOptions = {}): AuditVerification {
  const v = new AuditTrailVerifier(options)
  for (const l of lines) v.push(l)
  return v.finish()
}
