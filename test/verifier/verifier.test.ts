import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Authority, createVerifier, MAX_TOKEN_BYTES, TokenReplayed } from 'agent-trust'
import { b64url, CONTEXT, decodeHeader, decodePayload, hmacRaw, makeKernel, MANIFEST, READ_SCOPE, signRaw } from '../support/kernel.js'

afterEach(() => {
  vi.useRealTimers()
})

async function forgeKit() {
  const k = await makeKernel()
  const good = await k.mintRead()
  const header = decodeHeader(good)
  const payload = decodePayload(good)
  const { privateKey } = k.authority.keys.active()
  const sign = (h: unknown, p: unknown) => signRaw(h, p, privateKey)
  return { ...k, good, header, payload, sign, privateKey }
}

const deny = (code: string) => expect.objectContaining({ code })

describe('verifier: the happy path', () => {
  it('accepts a fresh token once, with its claims', async () => {
    const { verifier, mintRead, read } = await makeKernel()
    const cap = await verifier.verify(await mintRead(), read)
    expect(cap.presenter).toBe('agent-summarizer-v2')
    expect(cap.trustLevel).toBe('L2')
    expect(cap.claims.context).toEqual(CONTEXT)
    expect(cap.claims.scope).toEqual([READ_SCOPE])
  })
})

describe('step 1: shape and header', () => {
  it('rejects a missing token', async () => {
    const { verifier, read } = await makeKernel()
    for (const t of [undefined, null, '']) await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_MISSING'))
  })

  it.each([
    ['not a string', 42],
    ['two parts', 'a.b'],
    ['four parts', 'a.b.c.d'],
    ['padding', 'eyJhbGciOiJFUzI1NiJ9=.e30.AA'],
    ['standard base64 chars', 'eyJ+bGci.e30.AA'],
    ['whitespace', ' eyJhbGciOiJFUzI1NiJ9.e30.AA'],
    ['empty header', '.e30.AA'],
    ['header not JSON', `${b64url('not json')}.e30.AA`],
    ['header an array', `${b64url([])}.e30.AA`],
    ['header a string', `${b64url('"x"')}.e30.AA`],
  ])('rejects a malformed token: %s', async (_name, token) => {
    const { verifier, read } = await makeKernel()
    await expect(verifier.verify(token, read)).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
  })

  it('rejects non-canonical base64url (trailing bits) that decodes to the same bytes', async () => {
    const { verifier, mintRead, read } = await makeKernel()
    const t = await mintRead()
    const sig = t.slice(t.lastIndexOf('.') + 1)
    // 86 chars = 64 bytes + 4 spare bits in the last char: flip one spare bit.
    const last = sig[sig.length - 1] as string
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const mutated = alphabet[alphabet.indexOf(last) ^ 1] as string
    const t2 = t.slice(0, t.length - 1) + mutated
    expect(Buffer.from(sig, 'base64url').equals(Buffer.from(t2.slice(t2.lastIndexOf('.') + 1), 'base64url'))).toBe(true)
    await expect(verifier.verify(t2, read)).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
  })

  it('rejects tokens over 8 KiB before parsing them', async () => {
    const { verifier, read, sign, header, payload } = await forgeKit()
    const big = sign(header, { ...payload, pad: 'x'.repeat(MAX_TOKEN_BYTES) })
    await expect(verifier.verify(big, read)).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
    await expect(verifier.verify('a'.repeat(MAX_TOKEN_BYTES + 1), read)).rejects.toThrow(
      expect.objectContaining({ details: expect.objectContaining({ rule: 'size' }) }),
    )
  })

  it.each([
    ['none'],
    ['None'],
    ['NONE'],
    ['nOnE'],
    ['HS256'],
    ['RS256'],
    ['ES384'],
    ['ES256K'],
    ['EdDSA'],
    ['es256'],
    [''],
    [null],
    [['ES256']],
  ])('rejects alg %j', async (alg) => {
    const { verifier, read, header, payload, sign } = await forgeKit()
    const unsigned = `${b64url({ ...header, alg })}.${b64url(payload)}.`
    await expect(verifier.verify(unsigned, read)).rejects.toThrow(deny('ERR_TOKEN_ALG'))
    await expect(verifier.verify(sign({ ...header, alg }, payload), read)).rejects.toThrow(deny('ERR_TOKEN_ALG'))
  })

  it('rejects a missing alg', async () => {
    const { verifier, read, header, payload, sign } = await forgeKit()
    const { alg: _a, ...rest } = header
    await expect(verifier.verify(sign(rest, payload), read)).rejects.toThrow(deny('ERR_TOKEN_ALG'))
  })

  it('rejects HS256 signed with the public key as the HMAC secret (key confusion)', async () => {
    const { verifier, read, header, payload, authority } = await forgeKit()
    const jwk = authority.jwks().keys[0]!
    for (const secret of [JSON.stringify(jwk), `${jwk.x}${jwk.y}`, Buffer.from(jwk.x as string, 'base64url')]) {
      const t = hmacRaw({ ...header, alg: 'HS256' }, payload, secret)
      await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_ALG'))
    }
  })

  it.each([['jwk'], ['jku'], ['x5u'], ['x5c'], ['x5t'], ['crit'], ['b64'], ['cty'], ['zip'], ['nonce']])(
    'rejects an extra header member %s, even validly signed',
    async (member) => {
      const { verifier, read, header, payload, sign } = await forgeKit()
      const attackerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      const value =
        member === 'jwk' ? attackerKey.publicKey.export({ format: 'jwk' }) : member === 'crit' ? ['exp'] : 'https://attacker.example/x'
      await expect(verifier.verify(sign({ ...header, [member]: value }, payload), read)).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
    },
  )

  it('rejects a token signed by an attacker key that embeds its own jwk', async () => {
    const { verifier, read, header, payload } = await forgeKit()
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const t = signRaw({ ...header, jwk: attacker.publicKey.export({ format: 'jwk' }) }, payload, attacker.privateKey)
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
  })

  it.each([['JWT'], ['at+jwt'], ['agent-cap+JWT'], ['application/agent-cap+jwt'], [''], [undefined]])(
    'rejects typ %j (type confusion)',
    async (typ) => {
      const { verifier, read, header, payload, sign } = await forgeKit()
      await expect(verifier.verify(sign({ ...header, typ }, payload), read)).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
    },
  )

  it.each([['unknown-kid'], ['../../../../dev/null'], ["' OR 1=1 --"], ['__proto__'], ['constructor'], [''], [42], [null]])(
    'rejects kid %j that names no trusted key',
    async (kid) => {
      const { verifier, read, header, payload, sign } = await forgeKit()
      await expect(verifier.verify(sign({ ...header, kid }, payload), read)).rejects.toThrow(deny('ERR_TOKEN_KEY_UNKNOWN'))
    },
  )

  it('rejects a token whose kid belongs to another authority it does not trust', async () => {
    const { verifier, read } = await makeKernel()
    const other = await Authority.create({ manifest: MANIFEST })
    const t = await other.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_KEY_UNKNOWN'))
  })
})

describe('step 2: signature', () => {
  it('rejects a modified payload, a modified signature and another key', async () => {
    const { verifier, read, good, header, payload } = await forgeKit()
    const [h, , s] = good.split('.')
    const elevated = `${h}.${b64url({ ...payload, scope: ['db:read:documents:namespace:user-999'] })}.${s}`
    await expect(verifier.verify(elevated, read)).rejects.toThrow(deny('ERR_TOKEN_SIGNATURE'))
    const sig = Buffer.from(s as string, 'base64url')
    sig[10] = (sig[10] as number) ^ 1
    await expect(verifier.verify(`${h}.${good.split('.')[1]}.${sig.toString('base64url')}`, read)).rejects.toThrow(
      deny('ERR_TOKEN_SIGNATURE'),
    )
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    await expect(verifier.verify(signRaw(header, payload, attacker.privateKey), read)).rejects.toThrow(deny('ERR_TOKEN_SIGNATURE'))
  })

  it('rejects a DER-encoded signature and a zero signature', async () => {
    const { verifier, read, good, privateKey } = await forgeKit()
    const input = good.slice(0, good.lastIndexOf('.'))
    const { sign } = await import('node:crypto')
    const der = sign('sha256', Buffer.from(input), privateKey).toString('base64url')
    await expect(verifier.verify(`${input}.${der}`, read)).rejects.toThrow(deny('ERR_TOKEN_SIGNATURE'))
    await expect(verifier.verify(`${input}.${Buffer.alloc(64).toString('base64url')}`, read)).rejects.toThrow(deny('ERR_TOKEN_SIGNATURE'))
  })
})

describe('step 3: claims', () => {
  const required = ['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', 'scope', 'delegation_depth', 'trust_level', 'context']
  it.each(required.map((c) => [c]))('rejects a token without %s', async (claim) => {
    const { verifier, read, header, payload, sign } = await forgeKit()
    const { [claim]: _drop, ...rest } = payload
    await expect(verifier.verify(sign(header, rest), read)).rejects.toThrow(
      expect.objectContaining({ code: 'ERR_TOKEN_CLAIMS', details: expect.objectContaining({ claim }) }),
    )
  })

  it.each([
    ['iss', 42],
    ['sub', ['agent-summarizer-v2']],
    ['sub', 'agent summarizer'],
    ['iat', '1713092400'],
    ['iat', 1.5],
    ['nbf', null],
    ['exp', -1],
    ['exp', 1e300],
    ['jti', 'a1b2c3d4'],
    ['jti', 42],
    ['scope', 'db:read:documents:namespace:user-123'],
    ['scope', []],
    ['scope', ['db:read:documents:namespace:*']],
    ['scope', ['db:read::user-123']],
    ['scope', Array.from({ length: 33 }, (_, i) => `s:${i}`)],
    ['scope', [42]],
    ['delegation_depth', -1],
    ['delegation_depth', '1'],
    ['delegation_depth', 1.5],
    ['trust_level', 'L0'],
    ['trust_level', 'L4'],
    ['trust_level', 3],
    ['context', 'sess-xyz'],
    ['context', { session_id: 's', user_id: 'u' }],
    ['context', { session_id: 's', user_id: 'u', task_id: 1 }],
    ['context', { session_id: 's', user_id: 'u', task_id: 't', extra: 'x' }],
    ['act', 'agent-x'],
    ['act', { sub: 'a', evil: 1 }],
    ['chain', ['not-a-uuid']],
    ['chain', []],
    ['cnf', { 'x5t#S256': 'short' }],
    ['cnf', { jwk: {} }],
    ['admin', true],
    ['__proto__', { polluted: true }],
  ])('rejects %s = %j', async (claim, value) => {
    const { verifier, read, header, payload, sign } = await forgeKit()
    const p =
      claim === '__proto__'
        ? JSON.parse(JSON.stringify(payload).replace(/^\{/, '{"__proto__":{"polluted":true},'))
        : { ...payload, [claim]: value }
    await expect(verifier.verify(sign(header, p), read)).rejects.toThrow(deny('ERR_TOKEN_CLAIMS'))
  })

  it.each([[[]], ['"string"'], [42], [null]])('rejects a payload that is not an object: %j', async (p) => {
    const { verifier, read, header, privateKey } = await forgeKit()
    const t = signRaw(header, typeof p === 'string' ? p : JSON.stringify(p), privateKey)
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_MALFORMED'))
  })

  it('rejects aud as an array, even one holding the right id', async () => {
    const { verifier, read, header, payload, sign } = await forgeKit()
    await expect(verifier.verify(sign(header, { ...payload, aud: ['agent-database-reader'] }), read)).rejects.toThrow(
      deny('ERR_TOKEN_CLAIMS'),
    )
  })

  it('rejects a token for another audience', async () => {
    const { verifier, read, mintRead } = await makeKernel()
    await expect(verifier.verify(await mintRead({ audience: 'agent-other-server' }), read)).rejects.toThrow(deny('ERR_TOKEN_AUDIENCE'))
  })

  it('rejects a wrong iss even when signed with the trusted key', async () => {
    const { verifier, read, header, payload, sign } = await forgeKit()
    await expect(verifier.verify(sign(header, { ...payload, iss: 'evil-authority' }), read)).rejects.toThrow(deny('ERR_TOKEN_ISSUER'))
  })

  it('rejects lifetimes over 300 s and out-of-order times', async () => {
    const { verifier, read, header, payload, sign } = await forgeKit()
    const iat = payload.iat as number
    await expect(verifier.verify(sign(header, { ...payload, exp: iat + 301 }), read)).rejects.toThrow(deny('ERR_TOKEN_LIFETIME'))
    await expect(verifier.verify(sign(header, { ...payload, exp: iat }), read)).rejects.toThrow(deny('ERR_TOKEN_LIFETIME'))
    await expect(verifier.verify(sign(header, { ...payload, nbf: iat - 10 }), read)).rejects.toThrow(deny('ERR_TOKEN_LIFETIME'))
    // exactly 300 s is allowed
    await expect(verifier.verify(sign(header, { ...payload, jti: randomUUID(), exp: iat + 300 }), read)).resolves.toBeDefined()
  })

  it('applies the clock tolerance to exp, nbf and iat', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'))
    const { verifier, read, header, payload, sign } = await forgeKit()
    const now = Math.floor(Date.now() / 1000)
    const at = (iat: number, exp: number) => sign(header, { ...payload, jti: randomUUID(), iat, nbf: iat, exp })
    // expired 4 s ago: within the 5 s tolerance
    await expect(verifier.verify(at(now - 64, now - 4), read)).resolves.toBeDefined()
    // expired 5 s ago: past the tolerance
    await expect(verifier.verify(at(now - 65, now - 5), read)).rejects.toThrow(deny('ERR_TOKEN_EXPIRED'))
    // issued 5 s in the future: within tolerance
    await expect(verifier.verify(at(now + 5, now + 65), read)).resolves.toBeDefined()
    // issued 6 s in the future
    await expect(verifier.verify(at(now + 6, now + 66), read)).rejects.toThrow(deny('ERR_TOKEN_NOT_YET_VALID'))
    // nbf in the future but iat now
    await expect(
      verifier.verify(sign(header, { ...payload, jti: randomUUID(), iat: now, nbf: now + 30, exp: now + 60 }), read),
    ).rejects.toThrow(deny('ERR_TOKEN_NOT_YET_VALID'))
  })

  it('expires real tokens after their lifetime', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'))
    const { verifier, read, mintRead } = await makeKernel()
    const t = await mintRead({ ttlSeconds: 60 })
    vi.setSystemTime(new Date('2026-01-01T00:01:05Z'))
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_EXPIRED'))
  })

  it('refuses a tolerance above 30 s at construction', async () => {
    const { authority } = await makeKernel()
    expect(() => createVerifier({ id: 'x', issuers: [authority.trustedIssuer()], clockToleranceSeconds: 31 })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
  })

  it('validates options: every misuse is one ERR_CONFIG_INVALID naming the path, never a value', async () => {
    const { authority } = await makeKernel()
    const issuers = [authority.trustedIssuer()]
    const bad: Array<[unknown, string]> = [
      [undefined, 'id'],
      [{}, 'id'],
      [{ id: '', issuers }, 'id'],
      [{ id: 'x' }, 'issuers'],
      [{ id: 'x', issuers: [] }, 'issuers'],
      [{ id: 'x', issuers: [{ issuer: 'a', jwks: null }] }, 'issuers[0].jwks'],
      [{ id: 'x', issuers: [{ issuer: 'a', jwks: { keys: [] }, extra: 1 }] }, 'issuers[0].extra'],
      [{ id: 'x', issuers, clockToleranceSeconds: 1.5 }, 'clockToleranceSeconds'],
      [{ id: 'x', issuers, store: {} }, 'store'],
      [{ id: 'x', issuers, audit: { record: 'no' } }, 'audit'],
      [{ id: 'x', issuers, requireCertificateBinding: 'yes' }, 'requireCertificateBinding'],
      [{ id: 'x', issuers, idd: 'typo' }, 'idd'],
    ]
    for (const [options, path] of bad) {
      let err: any
      try {
        createVerifier(options as any)
      } catch (e) {
        err = e
      }
      expect(err, JSON.stringify(options)).toMatchObject({ code: 'ERR_CONFIG_INVALID', details: { rule: 'options' } })
      expect(String(err.details.path), JSON.stringify(options)).toBe(path)
      expect(err.message).not.toContain('typo')
    }
  })
})

describe('step 4: binding', () => {
  it('requires the presenter to be the authenticated peer', async () => {
    const { verifier, read, mintRead } = await makeKernel()
    await expect(verifier.verify(await mintRead(), { ...read, peer: { agentId: 'moltbot-orchestrator' } })).rejects.toThrow(
      deny('ERR_TOKEN_BINDING'),
    )
    await expect(verifier.verify(await mintRead(), { ...read, peer: { agentId: 'agent-summarizer-v2' } })).resolves.toBeDefined()
  })

  it('requires the certificate a token is bound to', async () => {
    const { verifier, read, mintRead } = await makeKernel()
    const thumb = 'A'.repeat(43)
    const bound = () => mintRead({ certificateThumbprint: thumb })
    await expect(verifier.verify(await bound(), read)).rejects.toThrow(deny('ERR_TOKEN_BINDING'))
    await expect(
      verifier.verify(await bound(), { ...read, peer: { agentId: 'agent-summarizer-v2', certificateThumbprint: 'B'.repeat(43) } }),
    ).rejects.toThrow(deny('ERR_TOKEN_BINDING'))
    await expect(
      verifier.verify(await bound(), { ...read, peer: { agentId: 'agent-summarizer-v2', certificateThumbprint: thumb } }),
    ).resolves.toBeDefined()
  })
})

describe('steps 5 and 6: revocation and replay', () => {
  it('rejects a replayed token, sequentially', async () => {
    const { verifier, read, mintRead } = await makeKernel()
    const t = await mintRead()
    await verifier.verify(t, read)
    const err = await verifier.verify(t, read).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TokenReplayed)
    expect(String((err as Error).message)).not.toContain(t)
  })

  it('accepts a token exactly once under 200 concurrent presentations', async () => {
    const { verifier, read, mintRead } = await makeKernel()
    const t = await mintRead()
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => verifier.verify(t, read)))
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'ERR_TOKEN_REPLAYED' })
  })

  it('shares replay state between verifiers on one store, not across stores', async () => {
    const { authority, verifier, read, mintRead, store } = await makeKernel()
    const twin = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], store, mode: 'enforce' })
    const t = await mintRead()
    await verifier.verify(t, read)
    await expect(twin.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_REPLAYED'))
  })

  it('rejects a revoked token and keeps rejecting it', async () => {
    const { authority, verifier, read, mintRead } = await makeKernel()
    const t = await mintRead()
    await authority.revokeToken(decodePayload(t).jti as string)
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_REVOKED'))
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_TOKEN_REVOKED'))
  })

  it('rejects tokens of a revoked agent and mints none for it', async () => {
    const { authority, verifier, read, mintRead } = await makeKernel()
    const t = await mintRead()
    await authority.revokeAgent('agent-summarizer-v2')
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    await expect(mintRead()).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
  })

  it('revokeToken refuses something that is not a jti (so a token is never stored)', async () => {
    const { authority, mintRead } = await makeKernel()
    await expect(authority.revokeToken(await mintRead())).rejects.toThrow(deny('ERR_TOKEN_CLAIMS'))
  })
})

describe('step 7: authorization', () => {
  it('rejects a token without the required scope (another namespace)', async () => {
    const { verifier, mintRead } = await makeKernel()
    await expect(verifier.verify(await mintRead(), { scope: 'db:read:documents:namespace:user-999', operation: 'read' })).rejects.toThrow(
      deny('ERR_SCOPE_DENIED'),
    )
  })

  it('rejects an L1 token for a write operation even if the scope matches', async () => {
    const { verifier, authority } = await makeKernel()
    const scope = 'db:read:documents:namespace:user-5'
    const t = await authority.mint({
      subject: 'agent-status-reader',
      audience: 'agent-database-reader',
      scope: [scope],
      operation: 'read',
      context: CONTEXT,
    })
    await expect(verifier.verify(t, { scope, operation: 'write' })).rejects.toThrow(deny('ERR_TRUST_LEVEL'))
  })

  it('takes the lower of token and local manifest levels, and denies agents the local manifest lacks', async () => {
    const { authority } = await makeKernel()
    const local = { agents: [{ id: 'agent-summarizer-v2', trustLevel: 'L1' as const }] }
    const v = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], manifest: local, mode: 'enforce' })
    const mint = (subject: string, operation: 'read' | 'write', scope: string) =>
      authority.mint({ subject, audience: 'agent-database-reader', scope: [scope], operation, context: CONTEXT })
    await expect(
      v.verify(await mint('agent-summarizer-v2', 'read', READ_SCOPE), { scope: READ_SCOPE, operation: 'read' }),
    ).resolves.toMatchObject({ trustLevel: 'L1' })
    const purge = 'tool:agent-database-reader:purge'
    await expect(v.verify(await mint('agent-summarizer-v2', 'write', purge), { scope: purge, operation: 'execute' })).rejects.toThrow(
      deny('ERR_TRUST_LEVEL'),
    )
    await expect(
      v.verify(await mint('moltbot-orchestrator', 'read', READ_SCOPE), { scope: READ_SCOPE, operation: 'read' }),
    ).rejects.toThrow(deny('ERR_TRUST_LEVEL'))
  })
})

describe('modes and audit', () => {
  it('audit mode records the denial and lets the call proceed; enforce throws', async () => {
    const { authority, audit, mintRead } = await makeKernel()
    const v = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], audit, mode: 'audit' })
    const r = await v.authorize(await mintRead(), { scope: 'db:read:documents:namespace:user-999', operation: 'read' })
    expect(r).toMatchObject({ allowed: false, enforced: false, error: { code: 'ERR_SCOPE_DENIED' } })
    expect(audit.events.at(-1)).toMatchObject({ action: 'tool_call', decision: 'deny', code: 'ERR_SCOPE_DENIED', enforced: false })
  })

  it('records allow and deny events with ids and argument hashes, never tokens or raw arguments', async () => {
    const { verifier, audit, mintRead, read } = await makeKernel()
    const t = await mintRead()
    await verifier.verify(t, { ...read, tool: 'read_documents', args: { namespace: 'user-123', secret: 'hunter2' } })
    await verifier.verify(t, read).catch(() => undefined)
    const events = audit.events.filter((e) => e.action === 'tool_call')
    expect(events.map((e) => e.decision)).toEqual(['allow', 'deny'])
    expect(events[0]).toMatchObject({
      origin: 'agent-summarizer-v2',
      destination: 'agent-database-reader',
      tool: 'read_documents',
      trustLevel: 'L2',
      context: CONTEXT,
    })
    expect(events[0]!.argsHash).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const text = JSON.stringify(audit.events)
    expect(text).not.toContain(t.split('.')[2])
    expect(text).not.toContain('hunter2')
  })
})

describe('audit of authorization denials', () => {
  it('names the presenter and the jti when a verified token is denied at step 7', async () => {
    const { verifier, audit, mintRead } = await makeKernel()
    const t = await mintRead()
    await verifier.verify(t, { scope: 'db:read:documents:namespace:user-999', operation: 'read' }).catch(() => undefined)
    expect(audit.events.at(-1)).toMatchObject({
      decision: 'deny',
      code: 'ERR_SCOPE_DENIED',
      origin: 'agent-summarizer-v2',
      jti: decodePayload(t).jti,
    })
  })
})
