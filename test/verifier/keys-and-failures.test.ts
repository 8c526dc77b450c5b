import { describe, expect, it } from 'vitest'
import {
  Authority,
  createVerifier,
  generateSigningKey,
  importPrivateKey,
  importPublicKey,
  KeySet,
  MemoryReplayRevocationStore,
  type ReplayRevocationStore,
} from 'agent-trust'
import { CONTEXT, MANIFEST, makeKernel, READ_SCOPE } from '../support/kernel.js'

const mintRead = (authority: Authority) =>
  authority.mint({
    subject: 'agent-summarizer-v2',
    audience: 'agent-database-reader',
    scope: [READ_SCOPE],
    operation: 'read',
    context: CONTEXT,
  })

const deny = (code: string) => expect.objectContaining({ code })

describe('keys', () => {
  it('refuses keys that are not P-256 signing keys', async () => {
    const rec = await generateSigningKey()
    const { d: _d, ...pub } = rec.privateJwk
    await expect(importPrivateKey(pub)).rejects.toMatchObject({ code: 'ERR_KEY_INVALID' })
    await expect(importPublicKey(rec.privateJwk)).rejects.toMatchObject({ code: 'ERR_KEY_INVALID' })
    await expect(importPublicKey({ ...pub, crv: 'P-384' })).rejects.toMatchObject({ code: 'ERR_KEY_INVALID' })
    await expect(importPublicKey({ kty: 'oct', k: 'c2VjcmV0' })).rejects.toMatchObject({ code: 'ERR_KEY_INVALID' })
    await expect(importPublicKey({ ...pub, alg: 'HS256' })).rejects.toMatchObject({ code: 'ERR_KEY_INVALID' })
    await expect(KeySet.create([rec, rec])).rejects.toMatchObject({ code: 'ERR_KEY_INVALID' })
  })

  it('a deployment brings its own JWK; the JWKS publishes only public members', async () => {
    const rec = await generateSigningKey()
    const authority = await Authority.create({ manifest: MANIFEST, keys: [rec] })
    expect(authority.keys.active().kid).toBe(rec.kid)
    const jwks = authority.jwks()
    expect(jwks.keys).toHaveLength(1)
    expect(Object.keys(jwks.keys[0]!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'])
    expect(JSON.stringify(jwks)).not.toContain(rec.privateJwk.d as string)
  })

  it('retired keys stay published for the overlap, then are pruned', async () => {
    const set = await KeySet.create([], { overlapMs: 330_000 })
    const first = set.active().kid
    const t0 = Date.now()
    await set.rotate(undefined, t0)
    expect(set.jwks().keys.map((k) => k.kid)).toContain(first)
    expect(set.prune(t0 + 329_000)).toEqual([])
    expect(set.prune(t0 + 330_000)).toEqual([first])
    expect(set.jwks().keys.map((k) => k.kid)).not.toContain(first)
    await expect(KeySet.create([], { overlapMs: 1000 })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      details: { path: 'overlapMs' },
    })
  })

  it('a verifier ignores a JWKS entry that carries a private key, and a kid two issuers claim', async () => {
    const a = await Authority.create({ manifest: MANIFEST })
    const b = await Authority.create({ manifest: { ...MANIFEST, authority: { id: 'other-authority' } } })
    const token = await mintRead(a)
    const leaked = { keys: a.keys.records().map((r) => r.privateJwk) }
    const v1 = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer: a.id, jwks: leaked }], mode: 'enforce' })
    await expect(v1.verify(token, { scope: READ_SCOPE, operation: 'read' })).rejects.toThrow(deny('ERR_TOKEN_KEY_UNKNOWN'))
    // issuer b republishes a's key under its own name: the first-listed issuer keeps the kid
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.message)
    process.on('warning', onWarning)
    try {
      const v2 = createVerifier({
        id: 'agent-database-reader',
        issuers: [a.trustedIssuer(), { issuer: b.id, jwks: a.jwks() }],
        mode: 'enforce',
      })
      await expect(v2.verify(token, { scope: READ_SCOPE, operation: 'read' })).resolves.toBeDefined()
      // Listed the other way round, b owns the kid and a token of a's under it is not b's.
      const v3 = createVerifier({
        id: 'agent-database-reader',
        issuers: [{ issuer: b.id, jwks: a.jwks() }, a.trustedIssuer()],
        mode: 'enforce',
      })
      await expect(v3.verify(token, { scope: READ_SCOPE, operation: 'read' })).rejects.toThrow(deny('ERR_TOKEN_ISSUER'))
      await new Promise((r) => setImmediate(r))
      expect(warnings.some((w) => w.includes('listed earlier'))).toBe(true)
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('skips JWKS entries that are not objects, keeping every other key and issuer', async () => {
    const a = await Authority.create({ manifest: MANIFEST })
    const token = await mintRead(a)
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.message)
    process.on('warning', onWarning)
    try {
      for (const junk of [null, 1, 'k', [], true]) {
        const v = createVerifier({
          id: 'agent-database-reader',
          issuers: [
            { issuer: 'junk-issuer\u001b[2K', jwks: { keys: [junk] } as never },
            { issuer: a.id, jwks: { keys: [junk, ...a.jwks().keys] } as never },
          ],
          mode: 'enforce',
        })
        await expect(v.verify(token, { scope: READ_SCOPE, operation: 'read' })).resolves.toBeDefined()
      }
      await new Promise((r) => setImmediate(r))
      expect(warnings.some((w) => w.includes('not a JSON object'))).toBe(true)
      // The issuer name reaches the warning escaped.
      expect(warnings.every((w) => !w.includes('\u001b'))).toBe(true)
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('trusts neither key when one issuer publishes two different keys under one kid', async () => {
    const a = await Authority.create({ manifest: MANIFEST })
    const b = await Authority.create({ manifest: MANIFEST })
    const token = await mintRead(a)
    const [mine] = a.jwks().keys
    const [other] = b.jwks().keys
    const v = createVerifier({
      id: 'agent-database-reader',
      issuers: [{ issuer: a.id, jwks: { keys: [mine, { ...other, kid: mine?.kid }] } as never }],
      mode: 'enforce',
    })
    const warn = process.emitWarning
    process.emitWarning = () => undefined
    try {
      await expect(v.verify(token, { scope: READ_SCOPE, operation: 'read' })).rejects.toThrow(deny('ERR_TOKEN_KEY_UNKNOWN'))
    } finally {
      process.emitWarning = warn
    }
  })

  it('validates trusted issuers at construction', () => {
    expect(() => createVerifier({ id: 'x', issuers: [] })).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() => createVerifier({ id: 'x', issuers: [{ issuer: '', jwks: { keys: [] } }] })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
    expect(() =>
      createVerifier({
        id: 'x',
        issuers: [
          { issuer: 'a', jwks: { keys: [] } },
          { issuer: 'a', jwks: { keys: [] } },
        ],
      }),
    ).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() => createVerifier({ id: '', issuers: [{ issuer: 'a', jwks: { keys: [] } }] })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
  })
})

describe('fail closed', () => {
  it('an unexpected store failure denies with ERR_GENERIC and keeps the cause out of the message', async () => {
    const { authority, mintRead } = await makeKernel()
    const broken: ReplayRevocationStore = {
      check: async () => {
        throw new Error('connection string redis://:pw@host')
      },
      revokeToken: async () => undefined,
      revokeAgent: async () => undefined,
      close: async () => undefined,
    }
    const v = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store: broken, mode: 'enforce' })
    const err = (await v.verify(await mintRead(), { scope: READ_SCOPE, operation: 'read' }).catch((e: unknown) => e)) as Error & {
      code: string
    }
    expect(err.code).toBe('ERR_GENERIC')
    expect(err.message).not.toContain('pw@')
  })

  it('an unexpected store verdict is never read as success', async () => {
    const { authority, mintRead } = await makeKernel()
    const inner = new MemoryReplayRevocationStore()
    const odd: ReplayRevocationStore = {
      ...inner,
      check: async () => 'OK' as never,
      revokeToken: inner.revokeToken.bind(inner),
      revokeAgent: inner.revokeAgent.bind(inner),
      close: inner.close.bind(inner),
    }
    const v = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store: odd, mode: 'enforce' })
    await expect(v.verify(await mintRead(), { scope: READ_SCOPE, operation: 'read' })).rejects.toThrow(deny('ERR_STORE_UNAVAILABLE'))
  })

  it('mode off allows without verifying; audit mode still decides', async () => {
    const { authority } = await makeKernel()
    const off = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'off' })
    await expect(off.authorize('garbage', { scope: READ_SCOPE, operation: 'read' })).resolves.toEqual({ allowed: true, enforced: false })
    const enforce = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'enforce' })
    await expect(enforce.authorize('garbage', { scope: READ_SCOPE, operation: 'read' })).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
  })
})

describe('mode values are validated wherever they are given', () => {
  it('a mistyped mode fails at construction instead of silently not enforcing', async () => {
    const { authority } = await makeKernel()
    for (const mode of ['strict', 'enforcing', 'disabled', 42]) {
      expect(() => createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: mode as never })).toThrow(
        expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
      )
    }
    const upper = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'ENFORCE' as never })
    expect(upper.mode).toBe('enforce')
    await expect(upper.authorize('garbage', { scope: READ_SCOPE, operation: 'read' })).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
  })

  it('an unknown claim name is bounded in the error', async () => {
    const { verifier, authority, mintRead } = await makeKernel()
    const { signRaw, decodeHeader, decodePayload } = await import('../support/kernel.js')
    const t = await mintRead()
    const forged = signRaw(decodeHeader(t), { ...decodePayload(t), ['x'.repeat(5000)]: 1 }, authority.keys.active().privateKey)
    const err = (await verifier.verify(forged, { scope: READ_SCOPE, operation: 'read' }).catch((e: unknown) => e)) as {
      code: string
      message: string
    }
    expect(err.code).toBe('ERR_TOKEN_CLAIMS')
    expect(err.message.length).toBeLessThan(200)
  })
})
