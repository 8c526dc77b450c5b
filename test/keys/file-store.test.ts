/** FileKeyStore: mode 0600, atomic replace, refusal of readable or odd files, strict parsing. */
import { chmodSync, lstatSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createKeyManager, FileKeyStore, generateSigningKey, KeySet, MemoryKeyStore } from 'agent-trust'

const dir = mkdtempSync(join(tmpdir(), 'at-keys-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const posix = process.platform !== 'win32'
let n = 0
const fresh = (): string => join(dir, `k${n++}`, 'keys.json')

describe('FileKeyStore', () => {
  it('a missing file loads as no keys; save writes mode 0600 (whatever the umask) in a 0700 directory', async () => {
    const path = fresh()
    const store = new FileKeyStore(path)
    expect(await store.load()).toEqual([])
    const old = process.umask(0o000)
    try {
      await store.save([await generateSigningKey()])
    } finally {
      process.umask(old)
    }
    if (posix) {
      expect(statSync(path).mode & 0o777).toBe(0o600)
      expect(statSync(join(path, '..')).mode & 0o777).toBe(0o700)
    }
    expect(await store.load()).toHaveLength(1)
  })

  it('round-trips records exactly (life-cycle fields included)', async () => {
    const store = new FileKeyStore(fresh())
    const a = await generateSigningKey(1000)
    const b = { ...(await generateSigningKey(2000)), activatesAtMs: 5000 }
    const records = [{ ...a, retiredAtMs: 5000 }, b]
    await store.save(records)
    expect(await store.load()).toEqual(records)
  })

  it('replaces atomically: a new inode each save, no temporary file left, readers never see half a file', async () => {
    const path = fresh()
    const store = new FileKeyStore(path)
    const k1 = [await generateSigningKey()]
    const k2 = [await generateSigningKey(), await generateSigningKey()]
    await store.save(k1)
    const ino1 = statSync(path).ino
    await store.save(k2)
    expect(statSync(path).ino).not.toBe(ino1) // replaced by rename, not rewritten in place
    // Concurrent writers and readers: every read is one complete version or the other.
    const reads: number[] = []
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => store.save(i % 2 === 0 ? k1 : k2)),
      ...Array.from({ length: 40 }, async () => reads.push((await store.load()).length)),
    ])
    for (const r of reads) expect([1, 2]).toContain(r)
    expect(readdirSync(join(path, '..')).filter((f) => f.endsWith('.tmp'))).toEqual([])
  })

  it('a crash mid-save (a stray temporary file) leaves the previous version intact', async () => {
    const path = fresh()
    const store = new FileKeyStore(path)
    const keys = [await generateSigningKey()]
    await store.save(keys)
    writeFileSync(`${path}.999.deadbeef.tmp`, '{"version":1,"keys":[{"kid":', { mode: 0o600 })
    expect(await store.load()).toEqual(keys)
  })

  // Unix file modes and symlink checks do not exist on Windows.
  it.skipIf(!posix)('refuses a key file readable or writable by group or others (ERR_KEY_STORE_INSECURE)', async () => {
    for (const mode of [0o640, 0o604, 0o620, 0o666, 0o644]) {
      const path = fresh()
      const store = new FileKeyStore(path)
      await store.save([await generateSigningKey()])
      chmodSync(path, mode)
      await expect(store.load()).rejects.toMatchObject({ code: 'ERR_KEY_STORE_INSECURE' })
      // the error names the mode, never the key material
      const err = await store.load().catch((e: Error) => e)
      expect(String(err)).not.toMatch(/"d"|privateJwk/)
    }
    const path = fresh()
    const store = new FileKeyStore(path, { allowGroupReadable: true })
    await store.save([await generateSigningKey()])
    chmodSync(path, 0o640)
    expect(await store.load()).toHaveLength(1)
    chmodSync(path, 0o644)
    await expect(store.load()).rejects.toMatchObject({ code: 'ERR_KEY_STORE_INSECURE' })
  })

  // Unix file modes and symlink checks do not exist on Windows.
  it.skipIf(!posix)('refuses a symbolic link and a directory at the key path', async () => {
    const target = fresh()
    await new FileKeyStore(target).save([await generateSigningKey()])
    const link = join(dir, `link${n++}.json`)
    symlinkSync(target, link)
    expect(lstatSync(link).isSymbolicLink()).toBe(true)
    await expect(new FileKeyStore(link).load()).rejects.toMatchObject({ code: 'ERR_KEY_STORE_INSECURE' })
    await expect(new FileKeyStore(dir).load()).rejects.toMatchObject({ code: 'ERR_KEY_STORE_INSECURE' })
  })

  it('rejects malformed documents with ERR_KEY_INVALID', async () => {
    const bad = [
      'not json',
      '[]',
      '{"version":2,"keys":[]}',
      '{"version":1,"keys":[{"kid":""}]}',
      '{"version":1,"keys":[{"kid":"a","privateJwk":{},"createdAtMs":-1}]}',
    ]
    for (const text of bad) {
      const path = fresh()
      await new FileKeyStore(path).save([])
      writeFileSync(path, text, { mode: 0o600 })
      await expect(new FileKeyStore(path).load()).rejects.toMatchObject({ code: 'ERR_KEY_INVALID' })
    }
  })

  it('a key manager persists its first key and reloads the same key after a restart', async () => {
    const path = fresh()
    const m1 = await createKeyManager({ store: new FileKeyStore(path) })
    const kid = m1.keys.active().kid
    const m2 = await createKeyManager({ store: new FileKeyStore(path) })
    expect(m2.keys.active().kid).toBe(kid)
    if (posix) expect(statSync(path).mode & 0o777).toBe(0o600)
  })

  it('MemoryKeyStore round-trips and starts empty', async () => {
    const s = new MemoryKeyStore()
    expect(await s.load()).toEqual([])
    const set = await KeySet.create()
    await s.save(set.records())
    expect(await s.load()).toEqual(set.records())
  })
})
