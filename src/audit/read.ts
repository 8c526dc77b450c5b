/** Reading and verifying a trail file (streaming: memory per chain, not per event). */
import { createReadStream } from 'node:fs'
import { AuditTrailVerifier, type AuditVerification, type AuditVerifyOptions } from './verify.js'

/** A line of a trail file; `complete` is false for a last line without a newline. */
export interface AuditLine {
  readonly text: string
  readonly complete: boolean
}

/** Read a trail file line by line, streaming, from byte `start`. */
export async function* readAuditLines(path: string, options: { start?: number } = {}): AsyncGenerator<AuditLine> {
  let rest = ''
  for await (const chunk of createReadStream(path, { encoding: 'utf8', start: options.start ?? 0, highWaterMark: 1 << 16 })) {
    const text = rest + (chunk as string)
    const parts = text.split('\n')
    rest = parts.pop() as string
    for (const p of parts) yield { text: p, complete: true }
  }
  if (rest.length > 0) yield { text: rest, complete: false }
}

/**
 * Verify a trail: a JSONL file path, or lines (each without its newline) from anywhere,
 * for example a Redis stream read with `readAuditStream` from `agent-trust/audit/redis`.
 * Reports the first broken link per chain and the earliest overall.
 */
export async function verifyAuditTrail(
  source: string | Iterable<string> | AsyncIterable<string>,
  options: AuditVerifyOptions = {},
): Promise<AuditVerification> {
  const v = new AuditTrailVerifier(options)
  if (typeof source === 'string') {
    for await (const l of readAuditLines(source)) v.push(l.text, l.complete)
  } else {
    for await (const l of source) v.push(l)
  }
  return v.finish()
}
