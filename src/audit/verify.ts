/**
 * Verification of an audit trail: a sequence of lines, one or more chains, checked against
 * the chain rules of `./chain.ts` (each line's hash, `prev` links, consecutive `seq`, seals
 * and externally kept anchors). Pure: lines in, a report out.
 */
import { canonicalJson } from '../lib/hash.js'
import { z } from 'zod'
import { parseOptions } from '../lib/options.js'
import {
  AUDIT_FORMAT_VERSION,
  auditDigest,
  GENESIS_PREV,
  HmacKeySchema,
  lineOf,
  SEAL_NOTE,
  type AuditDigest,
  type AuditEvent,
  type AuditHead,
} from './chain.js'

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
  /**
   * Every chain in the trail must have an anchor (a signed checkpoint, a recorded head).
   * Without a key (SHA-256 chains), anyone who can write the file can add a whole chain of
   * their own from seq 0 that verifies; with checkpoints for every writer, such a chain is
   * the one nobody anchored. A writer that started after the last checkpoint fails too,
   * until its first checkpoint. Default false.
   */
  readonly requireAnchored?: boolean
  /** The key the writer used (`hmacKey`), when the chain is keyed. */
  readonly hmacKey?: string | Uint8Array
}

interface ChainState {
  readonly chainId: string
  events: number
  firstSeq: number
  /** The line of the chain's first event. */
  readonly firstLine: number
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
/** {@link AuditVerifyOptions}, checked once when the verifier is built. */
const AuditVerifyOptionsSchema = z.strictObject({
  requireSealed: z.boolean().optional(),
  // Anchors may be checkpoints (readCheckpoints), which carry more than the head.
  anchors: z
    .array(z.looseObject({ chainId: z.string().regex(CHAIN_ID, 'expected a chain id'), seq: z.int().min(-1), hash: z.string() }))
    .readonly()
    .optional(),
  allowTrimmedStart: z.boolean().optional(),
  requireAnchored: z.boolean().optional(),
  hmacKey: HmacKeySchema.optional(),
})

export class AuditTrailVerifier {
  readonly #chains = new Map<string, ChainState>()
  readonly #fileBreaks: AuditBreak[] = []
  readonly #digest: AuditDigest
  readonly #options: AuditVerifyOptions
  readonly #anchors = new Map<string, AuditHead[]>()
  #lines = 0
  #events = 0

  constructor(options: AuditVerifyOptions = {}) {
    parseOptions('AuditTrailVerifier', AuditVerifyOptionsSchema, options)
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
    this.#event(parsed, lineNo, text)
  }

  #event(e: AuditEvent, line: number, text: string): void {
    let c = this.#chains.get(e.chainId)
    const fresh = c === undefined
    if (c === undefined) {
      c = {
        chainId: e.chainId,
        events: 0,
        firstSeq: e.seq,
        firstLine: line,
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
    const canonical = canonicalJson(rest)
    if (this.#digest(canonical) !== hash) {
      c.brk = {
        ...at,
        kind: 'edited',
        message: `chain ${e.chainId}: the event at line ${line} (seq ${e.seq}) does not match its hash: it was edited`,
      }
      return
    }
    // One reading of every line: the bytes must be exactly those the log writes for this event.
    // A line that parses to it but is spelled otherwise (a member repeated, which JSON.parse
    // resolves to the last one while other readers take the first; members reordered; other
    // spacing, escapes or line ends) hides a different event from grep, a SIEM or a person.
    if (text !== lineOf(canonical, hash).slice(0, -1)) {
      c.brk = {
        ...at,
        kind: 'edited',
        message: `chain ${e.chainId}: the event at line ${line} (seq ${e.seq}) is not written as the log writes it (a repeated or reordered member, other spacing or escapes): it was edited`,
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
      if (c.brk === undefined && this.#options.requireAnchored === true && !this.#anchors.has(c.chainId)) {
        c.brk = {
          kind: 'inserted',
          line: c.firstLine,
          chainId: c.chainId,
          seq: c.firstSeq,
          message: `chain ${c.chainId} (from line ${c.firstLine}) has no anchor: a chain nobody checkpointed may have been written whole by someone else`,
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
