/**
 * The crypto thread (`cryptoOffload`): the same verdicts as inline node:crypto on every
 * Wycheproof vector, no confusion between keys (also across a thread restart), work in flight
 * survives the thread dying, and the thread neither keeps a process alive nor lets it exit
 * with a check still pending.
 */
import { execFile } from 'node:child_process'
import { createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { cryptoThreadForTests, signOnCryptoThread, verifyOnCryptoThread } from '../../src/tokens/crypto-thread.js'
import { assertSignatureOffloaded } from '../../src/tokens/jws.js'
import { wycheproof } from '../support/vectors.js'

const run = promisify(execFile)

const p1363 = (key: KeyObject) => ({ key, dsaEncoding: 'ieee-p1363' as const })

function keyPair() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
}

describe('crypto thread', () => {
  it('agrees with inline node:crypto on every Wycheproof ECDSA P-256 vector', async () => {
    const suite = wycheproof('ecdsa_secp256r1_sha256_p1363_test.json')
    const checks: Array<Promise<void>> = []
    let n = 0
    for (const g of suite.testGroups) {
      const key = g.publicKeyJwk ? createPublicKey({ key: g.publicKeyJwk, format: 'jwk' }) : createPublicKey(g.publicKeyPem)
      for (const t of g.tests) {
        const msg = Buffer.from(t.msg, 'hex')
        const sig = Buffer.from(t.sig, 'hex')
        let inline: boolean | 'throws'
        try {
          inline = cryptoVerify('sha256', msg, p1363(key), sig)
        } catch {
          inline = 'throws'
        }
        n++
        checks.push(
          verifyOnCryptoThread(key, msg.toString('latin1'), sig).then(
            (threaded) => expect({ id: t.tcId, verdict: threaded }).toEqual({ id: t.tcId, verdict: inline }),
            () => expect({ id: t.tcId, verdict: 'throws' }).toEqual({ id: t.tcId, verdict: inline }),
          ),
        )
        if (t.result === 'valid') expect(inline).toBe(true)
        if (t.result === 'invalid') expect(inline).not.toBe(true)
      }
    }
    await Promise.all(checks)
    expect(n).toBe(suite.numberOfTests)
  })

  it('signs with the key it was given: signatures verify inline under that key and no other', async () => {
    const a = keyPair()
    const b = keyPair()
    const input = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0'
    const [sigA, sigB] = await Promise.all([signOnCryptoThread(a.privateKey, input), signOnCryptoThread(b.privateKey, input)])
    expect(cryptoVerify('sha256', Buffer.from(input), p1363(a.publicKey), Buffer.from(sigA, 'base64url'))).toBe(true)
    expect(cryptoVerify('sha256', Buffer.from(input), p1363(b.publicKey), Buffer.from(sigB, 'base64url'))).toBe(true)
    expect(cryptoVerify('sha256', Buffer.from(input), p1363(b.publicKey), Buffer.from(sigA, 'base64url'))).toBe(false)
    // Interleaved on the thread: every answer is for its own key.
    const checks = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const [sig, pub] = i % 2 === 0 ? [sigA, i % 4 === 0 ? a.publicKey : b.publicKey] : [sigB, i % 4 === 1 ? b.publicKey : a.publicKey]
        return verifyOnCryptoThread(pub, input, Buffer.from(sig, 'base64url')).then((ok) => ({ i, ok }))
      }),
    )
    for (const { i, ok } of checks) expect({ i, ok }).toEqual({ i, ok: i % 4 === 0 || i % 4 === 1 })
  })

  it('keeps its answers right when the thread dies with work in flight, and after a new one starts', async () => {
    const { privateKey, publicKey } = keyPair()
    const other = keyPair()
    const input = 'header.payload'
    const good = cryptoSign('sha256', Buffer.from(input), p1363(privateKey))
    const forged = Buffer.from(good)
    forged[10] = (forged[10] as number) ^ 1
    await verifyOnCryptoThread(publicKey, input, good) // the thread now holds this key under some id
    const inFlight = Array.from({ length: 60 }, (_, i) =>
      verifyOnCryptoThread(i % 3 === 2 ? other.publicKey : publicKey, input, i % 3 === 0 ? good : forged).then((ok) => ({ i, ok })),
    )
    await cryptoThreadForTests.terminate()
    for (const { i, ok } of await Promise.all(inFlight)) expect({ i, ok }).toEqual({ i, ok: i % 3 === 0 })
    // A fresh thread knows no keys: ids from the old one must not be reused for other keys.
    const fresh = await Promise.all([
      verifyOnCryptoThread(other.publicKey, input, good),
      verifyOnCryptoThread(publicKey, input, good),
      verifyOnCryptoThread(publicKey, input, forged),
    ])
    expect(fresh).toEqual([false, true, false])
    expect(cryptoThreadForTests.running).toBe(true)
  })

  it('answers a burst larger than its queue correctly (the overflow runs inline)', async () => {
    const { privateKey, publicKey } = keyPair()
    const input = 'burst.payload'
    const good = cryptoSign('sha256', Buffer.from(input), p1363(privateKey))
    const forged = Buffer.from(good)
    forged[20] = (forged[20] as number) ^ 4
    const verdicts = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => verifyOnCryptoThread(publicKey, input, i % 2 === 0 ? good : forged)),
    )
    expect(verdicts).toEqual(Array.from({ length: 1000 }, (_, i) => i % 2 === 0))
    const signatures = await Promise.all(Array.from({ length: 600 }, () => signOnCryptoThread(privateKey, input)))
    for (const sig of signatures)
      expect(cryptoVerify('sha256', Buffer.from(input), p1363(publicKey), Buffer.from(sig, 'base64url'))).toBe(true)
  })

  it('maps every failure of a signature check to ERR_TOKEN_SIGNATURE', async () => {
    const { privateKey, publicKey } = keyPair()
    const input = 'a.b'
    const sig = cryptoSign('sha256', Buffer.from(input), p1363(privateKey))
    await expect(assertSignatureOffloaded({ signingInput: input, signature: sig }, publicKey)).resolves.toBeUndefined()
    await expect(assertSignatureOffloaded({ signingInput: 'a.c', signature: sig }, publicKey)).rejects.toMatchObject({
      code: 'ERR_TOKEN_SIGNATURE',
    })
    await expect(assertSignatureOffloaded({ signingInput: input, signature: Buffer.alloc(64) }, publicKey)).rejects.toMatchObject({
      code: 'ERR_TOKEN_SIGNATURE',
    })
    await expect(assertSignatureOffloaded({ signingInput: input, signature: Buffer.alloc(3) }, publicKey)).rejects.toMatchObject({
      code: 'ERR_TOKEN_SIGNATURE',
    })
    // A private key where a public one belongs, or an RSA key: the check throws, and denies.
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
    await expect(assertSignatureOffloaded({ signingInput: input, signature: sig }, rsa.publicKey)).rejects.toMatchObject({
      code: 'ERR_TOKEN_SIGNATURE',
    })
  })

  it('lets a process exit when idle, and not before a pending check has answered', async () => {
    const module = fileURLToPath(new URL('../../src/tokens/crypto-thread.ts', import.meta.url))
    // The last thing this script does is wait for the thread; nothing else keeps it alive.
    const script = `
      import { generateKeyPairSync, sign } from 'node:crypto'
      const { verifyOnCryptoThread } = await import(${JSON.stringify(module)})
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      const sig = sign('sha256', Buffer.from('x.y'), { key: privateKey, dsaEncoding: 'ieee-p1363' })
      await verifyOnCryptoThread(publicKey, 'x.y', sig) // the thread is up, and idle again
      await new Promise((resolve) => setTimeout(resolve, 50))
      verifyOnCryptoThread(publicKey, 'x.y', sig).then((ok) => console.log('verdict', ok))
    `
    // A file, not `-e`: an eval'd module's process exits when evaluation ends, whatever is still running.
    const dir = mkdtempSync(join(tmpdir(), 'agent-trust-thread-'))
    const file = join(dir, 'last-check.mjs')
    writeFileSync(file, script)
    try {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', file], { timeout: 15_000 })
      expect(stdout.trim()).toBe('verdict true')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
