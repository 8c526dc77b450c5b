/**
 * Files that decide trust are refused when anyone but the running user can change them:
 * the manifest loader, the trust-change file store, and (in gateway-cli.test.ts) the MCP
 * gateway's --jwks file. Real files, real modes, real ownership (chown when root).
 */
import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { FileTrustChangeStore, loadManifestFile } from 'agent-trust'
import { readTrustFileSync } from '../../src/config/trust-file.js'

const dir = mkdtempSync(join(tmpdir(), 'agent-trust-trust-file-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const MANIFEST = JSON.stringify({ agents: [{ id: 'agent-summarizer-v2', trustLevel: 'L2', grants: [] }] })
let n = 0
function file(content: string, mode: number): string {
  const p = join(dir, `f${n++}.json`)
  writeFileSync(p, content)
  chmodSync(p, mode)
  return p
}
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

describe('trust-deciding files', () => {
  it('reads a file owned by the running user and writable only by it', () => {
    expect(loadManifestFile(file(MANIFEST, 0o644)).agents[0]?.id).toBe('agent-summarizer-v2')
    expect(loadManifestFile(file(MANIFEST, 0o600)).agents).toHaveLength(1)
  })

  for (const mode of [0o666, 0o664, 0o646, 0o622]) {
    it(`refuses a manifest with mode ${mode.toString(8)} (group/other-writable)`, () => {
      expect(() => loadManifestFile(file(MANIFEST, mode))).toThrow(
        expect.objectContaining({ code: 'ERR_CONFIG_INVALID', details: expect.objectContaining({ rule: 'file-mode' }) }),
      )
    })
  }

  it('refuses a symbolic link', () => {
    const target = file(MANIFEST, 0o644)
    const link = join(dir, 'link.json')
    symlinkSync(target, link)
    expect(() => readTrustFileSync(link, 'manifest file')).toThrow(expect.objectContaining({ details: { rule: 'symlink' } }))
  })

  // Only root can create a file owned by another user (chown): skipped for a non-root developer; CI runs as root.
  it.runIf(isRoot)('refuses a file owned by another user', () => {
    const p = file(MANIFEST, 0o644)
    chownSync(p, 65534, 65534)
    expect(() => loadManifestFile(p)).toThrow(expect.objectContaining({ details: { rule: 'file-owner' } }))
  })

  it('the trust-change store re-checks on every read: a store made world-writable is refused', async () => {
    const p = join(dir, 'changes.json')
    const store = new FileTrustChangeStore(p)
    expect(await store.list()).toEqual([])
    writeFileSync(p, JSON.stringify({ version: 1, requests: [] }))
    chmodSync(p, 0o600)
    await store.list().catch(() => undefined)
    chmodSync(p, 0o666)
    await expect(store.list()).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID', details: { rule: 'file-mode' } })
  })
})
