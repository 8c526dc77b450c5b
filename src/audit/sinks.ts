/**
 * Where audit lines go. A sink receives batches from the audit log's background flush,
 * never from the call path, and may fail: the log counts the failure and retries.
 */
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import type { Writable } from 'node:stream'
import { z } from 'zod'
import { parseOptions, withMethods } from '../lib/options.js'

/** One chained event, ready to write. `line` ends with a newline. */
export interface AuditRecord {
  readonly line: string
  readonly chainId: string
  readonly seq: number
  readonly hash: string
  /** The canonical JSON without `hash` (`line` is derived from it): lets a sink encode without building `line`. */
  readonly canonical?: string
}

const HASH_PREFIX = ',"hash":"'
const LINE_END = '"}\n'

export interface AuditSink {
  /** For stats and error reports: `file:<path>`, `stdout`, `redis:<key>`. */
  readonly name: string
  /**
   * Write one batch, in order. Resolve once it is as durable as the sink promises; reject
   * if nothing of it was written (the log retries the whole batch later).
   */
  write(records: readonly AuditRecord[]): Promise<void>
  /** Best-effort synchronous write at process exit (optional). */
  writeSync?(records: readonly AuditRecord[]): void
  close(): Promise<void>
}

export interface FileSinkOptions {
  /** `fdatasync` after every batch, so a batch survives a power loss once written. Default true. */
  readonly fsync?: boolean
  /** Mode of a newly created file. Default 0o600 (the trail names agents and users). */
  readonly mode?: number
}

/**
 * Each `write(2)` carries whole lines of at most this many UTF-16 units (so at most 3 MiB,
 * about 1 MiB of ASCII): appends from several processes never interleave inside a line.
 */
const MAX_CHUNK_UNITS = 1 << 20

function unitsOf(r: AuditRecord): number {
  return r.canonical === undefined ? r.line.length : r.canonical.length + HASH_PREFIX.length + r.hash.length + LINE_END.length
}

/** Encode straight into one buffer per chunk: cheaper than joining the lines first. */
function chunks(records: readonly AuditRecord[]): Buffer[] {
  const out: Buffer[] = []
  let start = 0
  while (start < records.length) {
    let end = start
    let units = 0
    while (end < records.length && (end === start || units + unitsOf(records[end] as AuditRecord) <= MAX_CHUNK_UNITS)) {
      units += unitsOf(records[end] as AuditRecord)
      end++
    }
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    const buf = Buffer.allocUnsafe(units * 3)
    let off = 0
    for (let i = start; i < end; i++) {
      const r = records[i] as AuditRecord
      if (r.canonical === undefined) {
        off += buf.write(r.line, off, 'utf8')
        continue
      }
      // The line is the canonical JSON with its closing `}` replaced by `,"hash":"…"}` + newline.
      off += buf.write(r.canonical, off, 'utf8') - 1
      off += buf.write(HASH_PREFIX, off, 'latin1')
      off += buf.write(r.hash, off, 'latin1')
      off += buf.write(LINE_END, off, 'latin1')
    }
    out.push(buf.subarray(0, off))
    start = end
  }
  return out
}

/** `fileSink(path, options)`, checked once when the sink is built. */
const FileSinkArgsSchema = z.strictObject({
  path: z.string().min(1),
  options: z.strictObject({ fsync: z.boolean().optional(), mode: z.int().min(0).max(0o7777).optional() }).optional(),
})

const StreamSinkOptionsSchema = z.strictObject({ stream: withMethods<Writable>('write', 'on', 'listeners').optional() })

/**
 * JSONL file, opened for append (`O_APPEND`): several processes may share one file, each
 * with its own chain; every batch chunk is one `write(2)` of whole lines.
 *
 * A batch that fails part way (a full disk: `ENOSPC`; `EIO`; a failed `fdatasync`) is cut
 * back to the file's size before it (`ftruncate`), so the log's retry writes it whole, once:
 * the file holds only whole lines and no seq twice. The cut is made only when the file has
 * grown by exactly this batch's bytes; a process that appended to a shared file in between
 * keeps its lines (give each process its own file for the guarantee under a full disk).
 *
 * Subpath: `agent-trust/audit`.
 */
export function fileSink(path: string, options: FileSinkOptions = {}): AuditSink {
  const { options: o = {} } = parseOptions('fileSink', FileSinkArgsSchema, { path, options })
  const { fsync = true, mode = 0o600 } = o
  let handle: FileHandle | undefined
  let opening: Promise<FileHandle> | undefined
  const get = async (): Promise<FileHandle> => {
    if (handle !== undefined) return handle
    opening ??= open(path, 'a', mode).finally(() => {
      opening = undefined
    })
    handle = await opening
    return handle
  }
  const drop = async (): Promise<void> => {
    const h = handle
    handle = undefined
    await h?.close().catch(() => undefined)
  }
  // After a failed batch: the size before it and the size our bytes brought the file to.
  // The next batch first cuts the file back, so a retry never leaves half a line or a line twice.
  let repair: { readonly before: number; readonly after: number } | undefined
  const cutBack = async (h: FileHandle): Promise<void> => {
    if (repair === undefined) return
    const { size } = await h.stat()
    // Cut only if nothing but our own bytes followed (another process sharing the file may
    // have appended since: then its lines stay, and ours remain as they were written).
    if (size === repair.after && size > repair.before) await h.truncate(repair.before)
    repair = undefined
  }
  return {
    name: `file:${path}`,
    async write(records) {
      const h = await get()
      let before = -1
      let written = 0
      try {
        await cutBack(h)
        before = (await h.stat()).size
        for (const buf of chunks(records)) {
          let off = 0
          while (off < buf.length) {
            const { bytesWritten } = await h.write(buf, off, buf.length - off)
            off += bytesWritten
            written += bytesWritten
          }
        }
        if (fsync) await h.datasync()
      } catch (e) {
        // ENOSPC, EIO, a failed sync: the batch is retried whole, so none of it may stay.
        if (before >= 0 && written > 0) repair = { before, after: before + written }
        if (repair !== undefined) {
          try {
            await cutBack(h)
          } catch {
            // Kept: the next batch cuts back first, on this same file.
            throw e
          }
        }
        // Reopen on the next batch (the file may have been replaced or the disk remounted).
        await drop()
        throw e
      }
    },
    writeSync(records) {
      // At exit the file may never have been opened (nothing flushed yet).
      const fd = handle?.fd ?? openSync(path, 'a', mode)
      try {
        for (const buf of chunks(records)) {
          let off = 0
          while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off)
        }
        if (fsync) fdatasyncSync(fd)
      } finally {
        if (handle === undefined) closeSync(fd)
      }
    },
    async close() {
      if (opening !== undefined) await opening.catch(() => undefined)
      await drop()
    },
  }
}

export interface StreamSinkOptions {
  /** Default `process.stdout`. */
  readonly stream?: Writable
}

/** JSONL on stdout (for a log collector). A broken pipe is a sink failure, not a crash. */
export function stdoutSink(options: StreamSinkOptions = {}): AuditSink {
  const o = parseOptions('stdoutSink', StreamSinkOptionsSchema, options)
  const stream = o.stream ?? process.stdout
  // An EPIPE on stdout would otherwise be an uncaught 'error' event.
  if (!stream.listeners('error').includes(ignoreStreamError)) stream.on('error', ignoreStreamError)
  return {
    name: o.stream === undefined ? 'stdout' : 'stream',
    write(records) {
      return new Promise<void>((resolve, reject) => {
        if (stream.destroyed || !stream.writable) return reject(new Error('the stream is closed'))
        stream.write(records.map((r) => r.line).join(''), (err) => (err ? reject(err) : resolve()))
      })
    },
    async close() {},
  }
}

function ignoreStreamError(): void {}

/** Keeps lines in memory: for tests and examples. */
export function memorySink(): AuditSink & { readonly lines: string[] } {
  const lines: string[] = []
  return {
    name: 'memory',
    lines,
    async write(records) {
      for (const r of records) lines.push(r.line.slice(0, -1))
    },
    async close() {},
  }
}
