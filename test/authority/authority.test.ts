import { describe, expect, it } from 'vitest'
import { Authority, createVerifier, type TrustLevel } from 'agent-trust'
import { CONTEXT, decodeHeader, decodePayload, makeKernel, MANIFEST, READ_SCOPE } from '../support/kernel.js'

const deny = (code: string) => expect.objectContaining({ code })

describe('mint', () => {
  it('issues the seed token shape: ES256, typ, exact scope, depth, level, context', async () => {
    const { mintRead } = await makeKernel()
    const t = await mintRead()
    expect(decodeHeader(t)).toEqual({ alg: 'ES256', typ: 'agent-cap+jwt', kid: expect.any(String) })
    const p = decodePayload(t)
    expect(p).toMatchObject({
      iss: 'moltbot-authority',
      sub: 'agent-summarizer-v2',
      aud: 'agent-database-reader',
      scope: [READ_SCOPE],
      delegation_depth: 1,
      trust_level: 'L2',
      context: CONTEXT,
    })
    expect((p.exp as number) - (p.iat as number)).toBe(60)
    expect(p.nbf).toBe(p.iat)
    expect(p.jti).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('never issues two tokens with one jti', async () => {
    const { mintRead } = await makeKernel()
    const jtis = new Set<unknown>()
    for (let i = 0; i < 500; i++) jtis.add(decodePayload(await mintRead()).jti)
    expect(jtis.size).toBe(500)
  })

  it('refuses L0, unknown and revoked agents', async () => {
    const { authority, mintRead } = await makeKernel()
    await expect(mintRead({ subject: 'agent-untrusted' })).rejects.toThrow(deny('ERR_TRUST_LEVEL'))
    await expect(mintRead({ subject: 'agent-nobody' })).rejects.toThrow(deny('ERR_AGENT_UNKNOWN'))
    await expect(mintRead({ audience: 'agent-nowhere' })).rejects.toThrow(deny('ERR_AGENT_UNKNOWN'))
    await authority.revokeAgent('agent-summarizer-v2')
    await expect(mintRead()).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
  })

  it('refuses scopes outside the grants, wildcards and malformed scopes', async () => {
    const { mintRead } = await makeKernel()
    await expect(mintRead({ scope: ['db:read:documents:namespace:user-999'] })).rejects.toThrow(deny('ERR_SCOPE_DENIED'))
    await expect(mintRead({ scope: [READ_SCOPE, 'db:read:documents:namespace:user-999'] })).rejects.toThrow(deny('ERR_SCOPE_DENIED'))
    await expect(mintRead({ scope: ['db:read:documents:namespace:*'] })).rejects.toThrow(deny('ERR_SCOPE_INVALID'))
    await expect(mintRead({ scope: [] })).rejects.toThrow(deny('ERR_SCOPE_INVALID'))
    await expect(mintRead({ scope: ['db:read:documents:namespace:user-123:extra'] })).rejects.toThrow(deny('ERR_SCOPE_DENIED'))
  })

  it('refuses operations above the level: an L1 agent cannot get a write token', async () => {
    const { mintRead } = await makeKernel()
    const scope = ['db:write:documents:namespace:user-123']
    await expect(mintRead({ subject: 'agent-status-reader', scope, operation: 'write' })).rejects.toThrow(deny('ERR_TRUST_LEVEL'))
    await expect(mintRead({ subject: 'agent-status-reader', scope, operation: 'execute' })).rejects.toThrow(deny('ERR_TRUST_LEVEL'))
  })

  it('refuses lifetimes over 300 s and depths over the agent maximum', async () => {
    const { mintRead } = await makeKernel()
    await expect(mintRead({ ttlSeconds: 301 })).rejects.toThrow(deny('ERR_TOKEN_LIFETIME'))
    await expect(mintRead({ ttlSeconds: 0 })).rejects.toThrow(deny('ERR_TOKEN_LIFETIME'))
    await expect(mintRead({ delegationDepth: 2 })).rejects.toThrow(deny('ERR_DELEGATION_DEPTH'))
    expect(decodePayload(await mintRead({ ttlSeconds: 300, delegationDepth: 0 }))).toMatchObject({ delegation_depth: 0 })
  })

  it('mintForTool computes the scope from the tool template and arguments', async () => {
    const { authority, verifier } = await makeKernel()
    const r = await authority.mintForTool({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      tool: 'read_documents',
      args: { namespace: 'user-123' },
      context: CONTEXT,
    })
    expect(r).toMatchObject({ scope: READ_SCOPE, operation: 'read' })
    await expect(verifier.verify(r.token, { scope: r.scope, operation: r.operation })).resolves.toBeDefined()
    await expect(
      authority.mintForTool({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        tool: 'read_documents',
        args: { namespace: 'user-999' },
        context: CONTEXT,
      }),
    ).rejects.toThrow(deny('ERR_SCOPE_DENIED'))
    // an argument cannot smuggle extra segments or a wildcard
    for (const namespace of ['user-123:admin', '*', '']) {
      await expect(
        authority.mintForTool({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          tool: 'read_documents',
          args: { namespace },
          context: CONTEXT,
        }),
      ).rejects.toThrow(deny('ERR_SCOPE_INVALID'))
    }
    // an undeclared tool is execute with tool:<server>:<name>
    await expect(
      authority.mintForTool({ subject: 'agent-summarizer-v2', audience: 'agent-database-reader', tool: 'purge', context: CONTEXT }),
    ).resolves.toMatchObject({ scope: 'tool:agent-database-reader:purge', operation: 'execute' })
  })

  it('audits every mint decision without the token', async () => {
    const { audit, mintRead } = await makeKernel()
    const t = await mintRead()
    await mintRead({ subject: 'agent-untrusted' }).catch(() => undefined)
    expect(audit.events.map((e) => [e.action, e.decision, e.code])).toEqual([
      ['mint', 'allow', undefined],
      ['mint', 'deny', 'ERR_TRUST_LEVEL'],
    ])
    expect(JSON.stringify(audit.events)).not.toContain(t.split('.')[2])
  })
})

describe('exchange (re-delegation)', () => {
  async function delegated() {
    const k = await makeKernel()
    // orchestrator (depth 3) gets a token for the summarizer as audience, then the summarizer re-delegates
    const parent = await k.authority.mint({
      subject: 'moltbot-orchestrator',
      audience: 'agent-summarizer-v2',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
      delegationDepth: 2,
    })
    return { ...k, parent }
  }

  it('issues an attenuated token: same context, depth-1, act and chain, exp within the parent', async () => {
    const { authority, verifier, parent, read } = await delegated()
    const child = await authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })
    const p = decodePayload(child)
    const pp = decodePayload(parent)
    expect(p).toMatchObject({
      sub: 'moltbot-orchestrator',
      aud: 'agent-database-reader',
      scope: [READ_SCOPE],
      delegation_depth: 1,
      context: CONTEXT,
      act: { sub: 'agent-summarizer-v2' },
      chain: [pp.jti],
      trust_level: 'L2',
    })
    expect(p.exp as number).toBeLessThanOrEqual(pp.exp as number)
    const cap = await verifier.verify(child, read)
    expect(cap.presenter).toBe('agent-summarizer-v2')
  })

  it('refuses scope escalation, exhausted depth, wrong holder and L1 holders', async () => {
    const { authority, parent } = await delegated()
    await expect(
      authority.exchange({
        token: parent,
        holder: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: ['db:read:documents:namespace:user-999'],
      }),
    ).rejects.toThrow(deny('ERR_SCOPE_ESCALATION'))
    await expect(authority.exchange({ token: parent, holder: 'agent-status-reader', audience: 'agent-database-reader' })).rejects.toThrow(
      deny('ERR_TOKEN_AUDIENCE'),
    )
    const d0 = await authority.mint({
      subject: 'moltbot-orchestrator',
      audience: 'agent-summarizer-v2',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
      delegationDepth: 0,
    })
    await expect(authority.exchange({ token: d0, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })).rejects.toThrow(
      deny('ERR_DELEGATION_DEPTH'),
    )
    const toL1 = await authority.mint({
      subject: 'moltbot-orchestrator',
      audience: 'agent-status-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
      delegationDepth: 2,
    })
    await expect(authority.exchange({ token: toL1, holder: 'agent-status-reader', audience: 'agent-database-reader' })).rejects.toThrow(
      deny('ERR_TRUST_LEVEL'),
    )
  })

  it('depth runs out along a chain', async () => {
    const { authority, parent } = await delegated()
    const c1 = await authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'moltbot-orchestrator' })
    const c2 = await authority.exchange({ token: c1, holder: 'moltbot-orchestrator', audience: 'agent-summarizer-v2' })
    expect(decodePayload(c2)).toMatchObject({ delegation_depth: 0 })
    await expect(authority.exchange({ token: c2, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })).rejects.toThrow(
      deny('ERR_DELEGATION_DEPTH'),
    )
  })

  it('revoking an ancestor revokes the delegated token', async () => {
    const { authority, verifier, parent, read } = await delegated()
    const child = await authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })
    await authority.revokeToken(decodePayload(parent).jti as string)
    await expect(verifier.verify(child, read)).rejects.toThrow(deny('ERR_TOKEN_REVOKED'))
    await expect(authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })).rejects.toThrow(
      deny('ERR_TOKEN_REVOKED'),
    )
  })

  it('revoking the actor or the subject revokes the delegated token', async () => {
    for (const victim of ['agent-summarizer-v2', 'moltbot-orchestrator']) {
      const { authority, verifier, parent, read } = await delegated()
      const child = await authority.exchange({ token: parent, holder: 'agent-summarizer-v2', audience: 'agent-database-reader' })
      await authority.revokeAgent(victim)
      await expect(verifier.verify(child, read)).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    }
  })
})

describe('spawn', () => {
  const child = { id: 'agent-summarizer-child', trustLevel: 'L2' as TrustLevel, grants: [READ_SCOPE], maxDelegationDepth: 1 }

  it('an L3 agent spawns a narrower child that can then obtain tokens', async () => {
    const { authority, verifier, read } = await makeKernel()
    await authority.spawn({ parent: 'moltbot-orchestrator', child })
    const t = await authority.mint({
      subject: child.id,
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    await expect(verifier.verify(t, read)).resolves.toMatchObject({ presenter: child.id })
  })

  it('an L2 agent may not spawn', async () => {
    const { authority } = await makeKernel()
    await expect(authority.spawn({ parent: 'agent-summarizer-v2', child: { ...child, trustLevel: 'L1' } })).rejects.toThrow(
      deny('ERR_SPAWN_DENIED'),
    )
  })

  it('an L3 agent may not spawn a child above its level (L3 spawning L3 is allowed; above is impossible)', async () => {
    const m = structuredClone(MANIFEST) as { agents: Array<Record<string, unknown>> }
    m.agents.push({ id: 'agent-l3b', trustLevel: 'L3', grants: ['x:*'], maxDelegationDepth: 2 })
    const authority = await Authority.create({ manifest: m as never })
    await expect(
      authority.spawn({ parent: 'agent-l3b', child: { id: 'kid-l3', trustLevel: 'L3', grants: ['x:y'], maxDelegationDepth: 1 } }),
    ).resolves.toBeDefined()
    // a spawned L2 parent cannot spawn, and its children cannot exceed it
    await authority.spawn({ parent: 'agent-l3b', child: { id: 'kid-l2', trustLevel: 'L2', grants: ['x:y'] } })
    await expect(authority.spawn({ parent: 'kid-l2', child: { id: 'kid-of-l2', trustLevel: 'L3', grants: ['x:y'] } })).rejects.toThrow(
      deny('ERR_SPAWN_DENIED'),
    )
  })

  it('refuses a child above the parent level (escalation), whatever the spelling', async () => {
    const { authority } = await makeKernel()
    for (const trustLevel of ['L4', 'L9', 'root', 'l3', '', undefined]) {
      await expect(
        authority.spawn({ parent: 'moltbot-orchestrator', child: { ...child, trustLevel: trustLevel as TrustLevel } }),
      ).rejects.toThrow(deny('ERR_SPAWN_ESCALATION'))
    }
  })

  it('refuses a trust-change reason or requester with control, bidi or invisible characters (property)', async () => {
    const { default: fc } = await import('fast-check')
    const authority = await Authority.create({ manifest: MANIFEST })
    const hostile = fc
      .tuple(
        fc.string({ maxLength: 20 }),
        fc.constantFrom('\u001b[2K', '\u001b]0;x\u0007', '\u009b', '\u202e', '\u2066', '\u200b', '\u00ad', '\r', '\u0000', '\u{e0041}'),
        fc.string({ maxLength: 20 }),
      )
      .map(([a, c, b]) => `${a}${c}${b}`)
    await fc.assert(
      fc.asyncProperty(hostile, fc.boolean(), async (text, asRequester) => {
        const r = authority.requestTrustChange({
          agentId: 'moltbot-orchestrator',
          level: 'L2',
          reason: asRequester ? 'incident' : `why ${text}`,
          requestedBy: asRequester ? `ops ${text}` : 'ops',
        })
        await expect(r).rejects.toMatchObject({ code: 'ERR_TRUST_CHANGE_DENIED', details: { rule: 'unprintable' } })
      }),
      { numRuns: 100 },
    )
  })
  it('an L3 agent lowered to L2 by an approved trust change can no longer spawn', async () => {
    const { authority } = await makeKernel()
    const req = await authority.requestTrustChange({ agentId: 'moltbot-orchestrator', level: 'L2', reason: 'incident', requestedBy: 'ops' })
    await authority.decideTrustChange(req.id, { approved: true, approver: 'alice' })
    await expect(authority.spawn({ parent: 'moltbot-orchestrator', child })).rejects.toThrow(deny('ERR_SPAWN_DENIED'))
  })

  it('a spawned L2 child cannot raise itself by a trust change above its parent', async () => {
    const { authority } = await makeKernel()
    await authority.spawn({ parent: 'moltbot-orchestrator', child })
    await expect(
      authority.requestTrustChange({ agentId: child.id, level: 'L3', reason: 'x', requestedBy: child.id }),
    ).resolves.toMatchObject({ status: 'pending' })
    const lowered = await authority.requestTrustChange({
      agentId: 'moltbot-orchestrator',
      level: 'L2',
      reason: 'incident',
      requestedBy: 'ops',
    })
    await authority.decideTrustChange(lowered.id, { approved: true, approver: 'alice' })
    await expect(authority.requestTrustChange({ agentId: child.id, level: 'L3', reason: 'x', requestedBy: child.id })).rejects.toThrow(
      deny('ERR_TRUST_CHANGE_DENIED'),
    )
  })

  it('refuses grants beyond the parent, depth not below the parent, undeclared egress, taken ids', async () => {
    const { authority } = await makeKernel()
    await expect(
      authority.spawn({ parent: 'moltbot-orchestrator', child: { ...child, grants: ['db:*:documents:namespace:*'] } }),
    ).rejects.toThrow(deny('ERR_SCOPE_ESCALATION'))
    await expect(authority.spawn({ parent: 'moltbot-orchestrator', child: { ...child, grants: ['admin:everything'] } })).rejects.toThrow(
      deny('ERR_SCOPE_ESCALATION'),
    )
    await expect(authority.spawn({ parent: 'moltbot-orchestrator', child: { ...child, maxDelegationDepth: 3 } })).rejects.toThrow(
      deny('ERR_DELEGATION_DEPTH'),
    )
    await expect(
      authority.spawn({ parent: 'moltbot-orchestrator', child: { ...child, egress: ['https://external-api.com'] } }),
    ).rejects.toThrow(deny('ERR_SPAWN_ESCALATION'))
    await expect(authority.spawn({ parent: 'moltbot-orchestrator', child: { ...child, id: 'agent-summarizer-v2' } })).rejects.toThrow(
      deny('ERR_SPAWN_DENIED'),
    )
    await expect(authority.spawn({ parent: 'nobody', child })).rejects.toThrow(deny('ERR_SPAWN_DENIED'))
    await expect(authority.spawn({ parent: 'moltbot-orchestrator', child: { ...child, id: 'bad id!' } })).rejects.toThrow(
      deny('ERR_SPAWN_DENIED'),
    )
  })

  it('revoking the parent revokes the child and its tokens', async () => {
    const { authority, verifier, read } = await makeKernel()
    await authority.spawn({ parent: 'moltbot-orchestrator', child })
    const t = await authority.mint({
      subject: child.id,
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    expect(await authority.revokeAgent('moltbot-orchestrator')).toContain(child.id)
    await expect(verifier.verify(t, read)).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    await expect(
      authority.mint({ subject: child.id, audience: 'agent-database-reader', scope: [READ_SCOPE], operation: 'read', context: CONTEXT }),
    ).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
  })
})

describe('trust changes need a human', () => {
  it('a request changes nothing until approved; approval applies it and revokes outstanding tokens', async () => {
    const { authority, verifier, mintRead, read, audit } = await makeKernel()
    const before = await mintRead()
    const req = await authority.requestTrustChange({
      agentId: 'agent-summarizer-v2',
      level: 'L3',
      reason: 'needs to spawn',
      requestedBy: 'moltbot-orchestrator',
    })
    expect(req.status).toBe('pending')
    expect(authority.agent('agent-summarizer-v2')?.level).toBe('L2')
    await authority.decideTrustChange(req.id, { approved: true, approver: 'alice@example.com' })
    expect(authority.agent('agent-summarizer-v2')?.level).toBe('L3')
    await expect(verifier.verify(before, read)).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    const after = await mintRead()
    expect(decodePayload(after).trust_level).toBe('L3')
    expect(audit.events.filter((e) => e.action === 'trust_change').map((e) => e.decision)).toEqual(['allow', 'allow'])
  })

  it('a denied or failing approver leaves the level unchanged', async () => {
    const deniedApprover = async () => ({ approved: false, approver: 'bob' })
    const a = await Authority.create({ manifest: MANIFEST, approver: deniedApprover })
    expect((await a.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L3', reason: 'x', requestedBy: 'y' })).status).toBe(
      'denied',
    )
    expect(a.agent('agent-summarizer-v2')?.level).toBe('L2')
    const throwing = await Authority.create({
      manifest: MANIFEST,
      approver: async () => {
        throw new Error('webhook down')
      },
    })
    expect((await throwing.requestTrustChange({ agentId: 'agent-summarizer-v2', level: 'L3', reason: 'x', requestedBy: 'y' })).status).toBe(
      'pending',
    )
    expect(throwing.agent('agent-summarizer-v2')?.level).toBe('L2')
  })

  it('nothing in the token path changes a level: a forged trust_level claim is rejected by signature', async () => {
    const { authority, verifier } = await makeKernel()
    const t = await authority.mint({
      subject: 'agent-status-reader',
      audience: 'agent-database-reader',
      scope: ['db:write:documents:namespace:user-1'.replace('write', 'read')],
      operation: 'read',
      context: CONTEXT,
    })
    const [h, p, s] = t.split('.')
    const claims = JSON.parse(Buffer.from(p as string, 'base64url').toString())
    claims.trust_level = 'L3'
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`
    await expect(verifier.verify(forged, { scope: 'db:read:documents:namespace:user-1', operation: 'write' })).rejects.toThrow(
      deny('ERR_TOKEN_SIGNATURE'),
    )
    expect(authority.agent('agent-status-reader')?.level).toBe('L1')
  })

  it('a decision needs an approver and happens once', async () => {
    const { authority } = await makeKernel()
    const req = await authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'r', requestedBy: 'o' })
    await expect(authority.decideTrustChange(req.id, { approved: true, approver: '' })).rejects.toThrow(deny('ERR_TRUST_CHANGE_DENIED'))
    await authority.decideTrustChange(req.id, { approved: false, approver: 'carol' })
    await expect(authority.decideTrustChange(req.id, { approved: true, approver: 'carol' })).rejects.toThrow(
      deny('ERR_TRUST_CHANGE_DENIED'),
    )
    await expect(
      authority.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: ' ', requestedBy: 'o' }),
    ).rejects.toThrow(deny('ERR_TRUST_CHANGE_DENIED'))
  })
})

describe('key rotation inside one process', () => {
  it('tokens signed before a rotation still verify; a revoked key is gone at once', async () => {
    const { authority, verifier, mintRead, read } = await makeKernel()
    const before = await mintRead()
    const oldKid = decodeHeader(before).kid as string
    await authority.keys.rotate()
    const after = await mintRead()
    expect(decodeHeader(after).kid).not.toBe(oldKid)
    await expect(verifier.verify(before, read)).resolves.toBeDefined()
    await expect(verifier.verify(after, read)).resolves.toBeDefined()
    const again = await mintRead()
    await authority.keys.rotate()
    await authority.keys.revoke(decodeHeader(again).kid as string)
    await expect(verifier.verify(again, read)).rejects.toThrow(deny('ERR_TOKEN_KEY_UNKNOWN'))
    // a separate verifier created later also trusts only the live keys
    const v2 = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()], mode: 'enforce' })
    await expect(v2.verify(await mintRead(), read)).resolves.toBeDefined()
  })
})

describe('default keys rotate on the manifest schedule', () => {
  it('an authority without supplied keys rotates them, and tokens signed before keep verifying', async () => {
    const manifest = { ...MANIFEST, authority: { id: 'moltbot-authority', keyRotationHours: 0.0005 } } // 1.8 s
    const authority = await Authority.create({ manifest })
    try {
      const verifier = authority.createVerifier({ id: 'agent-database-reader', mode: 'enforce' })
      const mint = () =>
        authority.mint({
          subject: 'agent-summarizer-v2',
          audience: 'agent-database-reader',
          scope: [READ_SCOPE],
          operation: 'read',
          context: CONTEXT,
        })
      const before = await mint()
      const firstKid = decodeHeader(before).kid
      const deadline = Date.now() + 10_000
      while (authority.keys.active().kid === firstKid && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
      const after = await mint()
      expect(decodeHeader(after).kid).not.toBe(firstKid)
      await expect(verifier.verify(before, { scope: READ_SCOPE, operation: 'read' })).resolves.toBeDefined()
      await expect(verifier.verify(after, { scope: READ_SCOPE, operation: 'read' })).resolves.toBeDefined()
    } finally {
      authority.close()
    }
  }, 20_000)
})

describe('quarantine reaches tokens minted elsewhere', () => {
  it('an agent revoked through one authority is refused even for tokens another authority mints later', async () => {
    const { MemoryReplayRevocationStore } = await import('agent-trust')
    const store = new MemoryReplayRevocationStore()
    const a = await Authority.create({ manifest: MANIFEST, store })
    const b = await Authority.create({ manifest: MANIFEST, store, keys: a.keys })
    a.close()
    b.close()
    const verifier = a.createVerifier({ id: 'agent-database-reader', mode: 'enforce' })
    await a.revokeAgent('agent-summarizer-v2')
    // b never heard of the revocation: it reads the quarantine from the store and refuses to mint
    await new Promise((r) => setTimeout(r, 1100))
    await expect(
      b.mint({
        subject: 'agent-summarizer-v2',
        audience: 'agent-database-reader',
        scope: [READ_SCOPE],
        operation: 'read',
        context: CONTEXT,
      }),
    ).rejects.toThrow(deny('ERR_AGENT_REVOKED'))
    // a trust change, by contrast, only kills the tokens issued so far
    const req = await b.requestTrustChange({ agentId: 'agent-status-reader', level: 'L2', reason: 'promotion', requestedBy: 'ops' })
    await b.decideTrustChange(req.id, { approved: true, approver: 'alice' })
    const fresh = await b.mint({
      subject: 'agent-status-reader',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
    })
    await new Promise((r) => setTimeout(r, 1100))
    await expect(verifier.verify(fresh, { scope: READ_SCOPE, operation: 'read' })).resolves.toBeDefined()
  }, 10_000)
})
