/**
 * Where the authority's signing keys persist: a file by default (mode
 * 0600, atomic replace), in memory for tests, Redis for several authority replicas
 * (`agent-trust/keys/redis`).
 *
 * The records hold PRIVATE keys. The file store refuses to read a file that group or
 * others can access, and always writes with mode 0600 through a temporary file and a
 * rename, so that a crash leaves the previous or the next version, never half of one.
 */
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { KeyInvalid, KeyStoreInsecure } from '../errors.js'
import { z } from 'zod'
import { parseOptions } from '../lib/options.js'
import type { SigningKeyRecord } from './index.js'

/** Persistence for {@link SigningKeyRecord}s. */
/** What a key manager tells the store along with the records. */
export interface KeySaveMeta {
  /** How long before it signs each new key is published, ms. */
  readonly prepublishMs?: number
}

export interface KeyStore {
  /** The persisted records, oldest first; `[]` when nothing was saved yet. */
  load(): Promise<SigningKeyRecord[]>
  /**
   * Replace the persisted records with these, atomically. `meta.prepublishMs` is the key
   * manager's pre-publication lead: a store that publishes a JWKS (the Redis one) publishes
   * it with the keys, so readers keep their cache age below it.
   */
  save(records: readonly SigningKeyRecord[], meta?: KeySaveMeta): Promise<void>
  /**
   * Optional: run `fn` while holding a lock shared by every replica using this store, so
   * that only one of them rotates at a time. With `wait: false` resolve `undefined` at once
   * when another replica holds it; with `wait: true` wait (bounded) for it.
   */
  withLock?<T>(fn: () => Promise<T>, options: { wait: boolean }): Promise<T | undefined>
  /** Optional: release connections. */
  close?(): Promise<void>
}

const FILE_VERSION = 1

/** The on-disk and in-Redis document: `{ version: 1, keys: [...] }`. */
export function serializeRecords(records: readonly SigningKeyRecord[]): string {
  return JSON.stringify({ version: FILE_VERSION, keys: records.map(cleanRecord) })
}

function cleanRecord(r: SigningKeyRecord): SigningKeyRecord {
  return {
    kid: r.kid,
    privateJwk: r.privateJwk,
    createdAtMs: r.createdAtMs,
    ...(r.retiredAtMs === undefined ? {} : { retiredAtMs: r.retiredAtMs }),
    ...(r.activatesAtMs === undefined ? {} : { activatesAtMs: r.activatesAtMs }),
  }
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0
}

/** Parse and check a persisted document; any deviation is `ERR_KEY_INVALID` (never echoing key material). */
export function parseRecords(text: string): SigningKeyRecord[] {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (cause) {
    throw new KeyInvalid('the key store does not hold valid JSON', { cause })
  }
  const d = doc as { version?: unknown; keys?: unknown }
  if (typeof doc !== 'object' || doc === null || d.version !== FILE_VERSION || !Array.isArray(d.keys)) {
    throw new KeyInvalid('the key store document must be {"version": 1, "keys": [...]}')
  }
  return d.keys.map((k: unknown, i: number) => {
    const r = k as Partial<SigningKeyRecord> | null
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.kid !== 'string' ||
      r.kid.length === 0 ||
      typeof r.privateJwk !== 'object' ||
      r.privateJwk === null ||
      !isTime(r.createdAtMs) ||
      (r.retiredAtMs !== undefined && !isTime(r.retiredAtMs)) ||
      (r.activatesAtMs !== undefined && !isTime(r.activatesAtMs))
    ) {
      throw new KeyInvalid(`the key store's record ${i} is malformed`, { details: { rule: `keys[${i}]` } })
    }
    return cleanRecord(r as SigningKeyRecord)
  })
}

/** Keys in memory only: for tests and short-lived tools (keys die with the process). */
export class MemoryKeyStore implements KeyStore {
  #text: string | undefined

  async load(): Promise<SigningKeyRecord[]> {
    return this.#text === undefined ? [] : parseRecords(this.#text)
  }

  async save(records: readonly SigningKeyRecord[]): Promise<void> {
    this.#text = serializeRecords(records)
  }
}

export interface FileKeyStoreOptions {
  /**
   * Accept a key file that group or others may read (e.g. a secret mounted 0640 for a
   * group the process belongs to). Default false: such a file is refused with
   * `ERR_KEY_STORE_INSECURE`. Saving always writes mode 0600 regardless.
   */
  readonly allowGroupReadable?: boolean
}

/** The default key file: `AGENT_TRUST_KEY_FILE`, else `.agent-trust/keys.json` under the working directory. */
export function defaultKeyFile(): string {
  return resolve(process.env.AGENT_TRUST_KEY_FILE ?? '.agent-trust/keys.json')
}

/** `new FileKeyStore(path, options)`, checked once. */
const FileKeyStoreArgsSchema = z.strictObject({
  path: z.string().min(1),
  options: z.strictObject({ allowGroupReadable: z.boolean().optional() }).optional(),
})

/**
 * Signing keys in a JSON file, mode 0600, replaced atomically (write a temporary file in
 * the same directory, fsync, rename over the old one, fsync the directory).
 *
 * Reading refuses (`ERR_KEY_STORE_INSECURE`) a path that is not a regular file or that
 * grants any permission to group or others: a private key that others could have read
 * must be treated as compromised, not silently used. One writer per file: several
 * authority replicas share keys through `RedisKeyStore` instead.
 *
 * @example
 * ```ts
 * const manager = await createKeyManager({ store: new FileKeyStore('/var/lib/agent-trust/keys.json') })
 * ```
 */
export class FileKeyStore implements KeyStore {
  readonly path: string
  readonly #allowGroup: boolean

  constructor(path: string = defaultKeyFile(), options: FileKeyStoreOptions = {}) {
    const args = parseOptions('FileKeyStore', FileKeyStoreArgsSchema, { path, options })
    this.path = resolve(path)
    this.#allowGroup = args.options?.allowGroupReadable === true
  }

  async load(): Promise<SigningKeyRecord[]> {
    let fh: FileHandle
    try {
      // O_NOFOLLOW: a symlink planted at the path is refused, not followed.
      fh = await open(this.path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0))
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return []
      if (code === 'ELOOP')
        throw new KeyStoreInsecure('the key file is a symbolic link; point the store at the file itself', { details: { rule: 'symlink' } })
      throw new KeyInvalid('the key file could not be opened', { cause: e })
    }
    try {
      // Check the opened file itself (fstat), so that nothing can be swapped in between.
      const st = await fh.stat()
      if (!st.isFile()) throw new KeyStoreInsecure('the key store path is not a regular file', { details: { rule: 'not-a-file' } })
      if (process.platform !== 'win32') {
        const loose = st.mode & (this.#allowGroup ? 0o007 : 0o077)
        if (loose !== 0) {
          throw new KeyStoreInsecure(
            `the key file has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; private keys must not be accessible to group or others (chmod 600)`,
            {
              details: { rule: 'file-mode', mode: (st.mode & 0o777).toString(8) },
            },
          )
        }
      }
      return parseRecords(await fh.readFile('utf8'))
    } finally {
      await fh.close()
    }
  }

  async save(records: readonly SigningKeyRecord[]): Promise<void> {
    const dir = dirname(this.path)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const tmp = `${this.path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
    // 'wx': never reuse an existing file (a planted temp file or symlink fails the open).
    const fh = await open(tmp, 'wx', 0o600)
    let renamed = false
    try {
      // The umask may have narrowed 0600 further, never widened it; set it explicitly anyway.
      await fh.chmod(0o600)
      await fh.writeFile(serializeRecords(records), 'utf8')
      await fh.sync()
      await fh.close()
      await rename(tmp, this.path)
      renamed = true
      await syncDirectory(dir)
    } finally {
      if (!renamed) {
        await fh.close().catch(() => undefined)
        await unlink(tmp).catch(() => undefined)
      }
    }
  }
}

async function syncDirectory(dir: string): Promise<void> {
  // Make the rename itself durable. Not supported on every platform: best effort.
  try {
    const d = await open(dir, constants.O_RDONLY)
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  } catch {
    /* e.g. Windows: directories cannot be opened */
  }
}
