/** guardTool / guardTools: the wrapped tool keeps its shape, and every call is checked. */
import { HumanMessage } from '@langchain/core/messages'
import { RunnableLambda } from '@langchain/core/runnables'
import { DynamicStructuredTool, DynamicTool, StructuredTool, tool } from '@langchain/core/tools'
import fc from 'fast-check'
import { createAgent } from 'langchain'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createVerifier } from 'agent-trust'
import { agentTrustContext, callerFromContext, guardTool, guardTools, isGuardedTool } from 'agent-trust/langchain'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../../support/options.js'
import { ctx, IDS, JWS_SHAPE, makeKernel, makeTools, MANIFEST, scripted, strings, TOOLKIT, toolMessages } from '../../support/langchain.js'

describe('guardTool keeps what the agent relies on', () => {
  it('name, description, schema, returnDirect, responseFormat, instanceof', async () => {
    const { authority, verifier } = await makeKernel()
    const { readDocuments, purge } = makeTools()
    const artifactTool = tool(async () => ['content', { raw: 1 }], {
      name: 'read_documents',
      description: 'with artifact',
      schema: z.object({ namespace: z.string() }),
      responseFormat: 'content_and_artifact',
    })
    const g = guardTool(readDocuments, { authority, verifier })
    expect(g).not.toBe(readDocuments)
    expect(g).toBeInstanceOf(DynamicStructuredTool)
    expect(g).toBeInstanceOf(StructuredTool)
    expect(g.name).toBe('read_documents')
    expect(g.description).toBe(readDocuments.description)
    expect(g.schema).toBe(readDocuments.schema)
    expect(isGuardedTool(g)).toBe(true)
    expect(isGuardedTool(readDocuments)).toBe(false)
    const p = guardTool(purge, { authority, verifier })
    expect(p.returnDirect).toBe(true)
    const a = guardTool(artifactTool, { authority, verifier })
    expect(a.responseFormat).toBe('content_and_artifact')
    const msg = await a.invoke(
      { id: 'c1', name: 'read_documents', args: { namespace: 'user-123' }, type: 'tool_call' },
      { context: ctx('agent-summarizer-v2') },
    )
    expect(msg.artifact).toEqual({ raw: 1 })
    // The name is pinned: it decides the scope.
    expect(() => {
      ;(g as { name: string }).name = 'write_document'
    }).toThrow(TypeError)
    // Wrapping twice does not check twice.
    expect(guardTool(g, { authority, verifier })).toBe(g)
  })

  it('guards a BaseToolkit and a string-input DynamicTool', async () => {
    const { authority, verifier, audit } = await makeKernel()
    const echo = new DynamicTool({ name: 'echo', description: 'echo', func: async (s: string) => `echo ${s}` })
    const toolkit = { getTools: () => [echo] }
    const [g] = guardTools(toolkit, { authority, verifier })
    expect(g).toBeInstanceOf(DynamicTool)
    // Undeclared: execute, tool:<toolkit>:echo. The orchestrator has no such grant.
    await expect(g!.invoke('hi', { context: ctx('agent-orchestrator') })).rejects.toMatchObject({ code: 'ERR_SCOPE_DENIED' })
    expect(audit.events.at(-1)).toMatchObject({
      action: 'mint',
      decision: 'deny',
      code: 'ERR_SCOPE_DENIED',
      tool: 'echo',
      capability: ['tool:agent-database-reader:echo'],
    })
  })
})

describe('per-call checks', () => {
  it('an allowed call runs once with a fresh token that never reaches the tool or the audit log', async () => {
    const { authority, verifier, audit } = await makeKernel()
    const { calls, readDocuments } = makeTools()
    const g = guardTool(readDocuments, { authority, verifier })
    await expect(g.invoke({ namespace: 'user-123' }, { context: ctx('agent-summarizer-v2') })).resolves.toBe('3 documents in user-123')
    await expect(g.invoke({ namespace: 'user-123' }, { context: ctx('agent-summarizer-v2') })).resolves.toBe('3 documents in user-123')
    expect(calls.runs).toHaveLength(2)
    for (const run of calls.runs) expect(strings(run.config).some((s) => JWS_SHAPE.test(s))).toBe(false)
    expect(strings(audit.events).some((s) => JWS_SHAPE.test(s))).toBe(false)
    const allows = audit.events.filter((e) => e.action === 'tool_call' && e.decision === 'allow')
    expect(allows).toHaveLength(2)
    expect(new Set(allows.map((e) => e.jti)).size).toBe(2)
    expect(allows[0]).toMatchObject({
      origin: 'agent-summarizer-v2',
      destination: TOOLKIT,
      tool: 'read_documents',
      capability: ['db:read:documents:namespace:user-123'],
      context: IDS,
    })
    expect(allows[0]!.argsHash).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it('the check sees the validated arguments: the scope follows what the tool runs with', async () => {
    const { authority, verifier, audit } = await makeKernel()
    const { calls, readDocuments } = makeTools()
    const g = guardTool(readDocuments, { authority, verifier })
    // The schema trims and lower-cases: "  USER-123 " runs as "user-123", and is checked as such.
    await expect(g.invoke({ namespace: '  USER-123 ' }, { context: ctx('agent-summarizer-v2') })).resolves.toBe('3 documents in user-123')
    expect(audit.events.at(-1)).toMatchObject({ decision: 'allow', capability: ['db:read:documents:namespace:user-123'] })
    // Another namespace needs another scope, which the summarizer lacks.
    await expect(g.invoke({ namespace: 'user-999' }, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({
      code: 'ERR_SCOPE_DENIED',
    })
    expect(audit.events.at(-1)).toMatchObject({
      action: 'mint',
      decision: 'deny',
      code: 'ERR_SCOPE_DENIED',
      origin: 'agent-summarizer-v2',
      capability: ['db:read:documents:namespace:user-999'],
    })
    // An argument that would smuggle extra scope segments is refused, not truncated.
    await expect(g.invoke({ namespace: 'user-123:admin' }, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({
      code: 'ERR_SCOPE_INVALID',
    })
    await expect(g.invoke({ namespace: '*' }, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({ code: 'ERR_SCOPE_INVALID' })
    expect(calls.runs).toHaveLength(1)
  })

  it('operations follow trust levels: an L1 agent may read but not write, even with the grant', async () => {
    const { authority, verifier } = await makeKernel()
    const { readDocuments, writeDocument } = makeTools()
    const [r, w] = guardTools([readDocuments, writeDocument], { authority, verifier })
    await expect(r!.invoke({ namespace: 'user-7' }, { context: ctx('agent-status-reader') })).resolves.toBe('3 documents in user-7')
    await expect(w!.invoke({ namespace: 'user-7', text: 'x' }, { context: ctx('agent-status-reader') })).rejects.toMatchObject({
      code: 'ERR_TRUST_LEVEL',
    })
  })

  it('identity comes only from the runtime context: configurable and metadata are ignored', async () => {
    const { authority, verifier, audit } = await makeKernel()
    const { calls, readDocuments } = makeTools()
    const g = guardTool(readDocuments, { authority, verifier })
    const spoof = { agentTrust: { agentId: 'agent-orchestrator', ...IDS } }
    await expect(
      g.invoke({ namespace: 'user-999' }, { configurable: spoof, metadata: { lc_agent_name: 'agent-orchestrator', ...spoof } }),
    ).rejects.toMatchObject({
      code: 'ERR_TOKEN_MISSING',
    })
    expect(audit.events.at(-1)).toMatchObject({ action: 'tool_call', decision: 'deny', code: 'ERR_TOKEN_MISSING', tool: 'read_documents' })
    // With a context, the context's agent is the caller, whatever configurable says.
    await expect(g.invoke({ namespace: 'user-999' }, { context: ctx('agent-summarizer-v2'), configurable: spoof })).rejects.toMatchObject({
      code: 'ERR_SCOPE_DENIED',
    })
    // A malformed caller is no caller.
    for (const bad of [
      { agentTrust: { agentId: '' } },
      { agentTrust: 'agent-orchestrator' },
      { agentTrust: { agentId: 'agent-orchestrator', session_id: 1, user_id: '', task_id: '' } },
    ]) {
      await expect(g.invoke({ namespace: 'user-1' }, { context: bad })).rejects.toMatchObject({ code: 'ERR_TOKEN_MISSING' })
    }
    expect(calls.runs).toHaveLength(0)
  })

  it('unknown and revoked agents are denied', async () => {
    const { authority, verifier } = await makeKernel()
    const { readDocuments } = makeTools()
    const g = guardTool(readDocuments, { authority, verifier })
    await expect(g.invoke({ namespace: 'user-123' }, { context: ctx('agent-nobody') })).rejects.toMatchObject({ code: 'ERR_AGENT_UNKNOWN' })
    await authority.revokeAgent('agent-summarizer-v2')
    await expect(g.invoke({ namespace: 'user-123' }, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({
      code: 'ERR_AGENT_REVOKED',
    })
  })

  it('a verifier that does not trust the authority denies every call', async () => {
    const { authority } = await makeKernel()
    const other = await makeKernel()
    const verifier = createVerifier({ id: TOOLKIT, issuers: [other.authority.trustedIssuer()], mode: 'enforce' })
    const { calls, readDocuments } = makeTools()
    const g = guardTool(readDocuments, { authority, verifier })
    await expect(g.invoke({ namespace: 'user-123' }, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({
      code: 'ERR_TOKEN_KEY_UNKNOWN',
    })
    expect(calls.runs).toHaveLength(0)
  })

  it('audit mode records the denial and lets the call through; off skips the check', async () => {
    for (const mode of ['audit', 'off'] as const) {
      const { authority, verifier, audit } = await makeKernel({ mode })
      const { calls, readDocuments } = makeTools()
      const g = guardTool(readDocuments, { authority, verifier })
      await expect(g.invoke({ namespace: 'user-999' }, { context: ctx('agent-summarizer-v2') })).resolves.toBe('3 documents in user-999')
      await expect(g.invoke({ namespace: 'user-999' })).resolves.toBe('3 documents in user-999')
      expect(calls.runs).toHaveLength(2)
      if (mode === 'audit') {
        expect(audit.events.map((e) => [e.action, e.decision, e.code])).toEqual([
          ['mint', 'deny', 'ERR_SCOPE_DENIED'],
          ['tool_call', 'deny', 'ERR_TOKEN_MISSING'],
        ])
        expect(audit.events[1]!.enforced).toBe(false)
      } else {
        expect(audit.events).toHaveLength(0)
      }
    }
  })

  it('property: a namespace is allowed exactly when the grant covers it and it is one scope segment', async () => {
    const { authority, verifier } = await makeKernel()
    const { readDocuments } = makeTools()
    const g = guardTool(readDocuments, { authority, verifier })
    const context = ctx('agent-summarizer-v2')
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 70 }),
          fc.constantFrom('user-123', 'USER-123', ' user-123', 'user-123 ', 'user-12', 'user-1234', '*', 'user-123:x'),
        ),
        async (ns) => {
          const validated = ns.trim().toLowerCase()
          const outcome = await g.invoke({ namespace: ns }, { context }).then(
            () => 'allow',
            (e: { code?: string }) => e.code,
          )
          expect(outcome).toBe(
            validated === 'user-123' ? 'allow' : /^[A-Za-z0-9._@/+-]{1,64}$/.test(validated) ? 'ERR_SCOPE_DENIED' : 'ERR_SCOPE_INVALID',
          )
        },
      ),
      { numRuns: 150 },
    )
  })
})

describe('set-up refusals', () => {
  it('refuses provider-side server tools with a clear error', async () => {
    const { authority, verifier } = await makeKernel()
    const { readDocuments } = makeTools()
    const webSearch = { type: 'web_search_20250305', name: 'web_search', max_uses: 3 }
    expect(() => guardTools([readDocuments, webSearch], { authority, verifier })).toThrow(
      /provider-side server tool: the model provider runs it/,
    )
    expect(() => guardTools([webSearch], { authority, verifier })).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
  })

  it('refuses tools whose calls could bypass the check, and bad options', async () => {
    const { authority, verifier } = await makeKernel()
    const { readDocuments } = makeTools()
    const asTool = RunnableLambda.from(async (x: { namespace: string }) => x.namespace).asTool({
      name: 'rl',
      schema: z.object({ namespace: z.string() }),
    })
    expect(() => guardTool(asTool as never, { authority, verifier })).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    class Sneaky extends StructuredTool {
      name = 'sneaky'
      description = 'overrides invoke'
      schema = z.object({})
      override async invoke(): Promise<string> {
        return 'ran without _call'
      }
      async _call(): Promise<string> {
        return 'x'
      }
    }
    expect(() => guardTool(new Sneaky(), { authority, verifier })).toThrow(/overrides invoke\(\) or call\(\)/)
    expect(() =>
      guardTool(readDocuments, { authority, verifier: createVerifier({ id: 'agent-nobody', issuers: [authority.trustedIssuer()] }) }),
    ).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() => guardTool(readDocuments, { authority: { mint: async () => '' } as never, verifier })).toThrowError(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
    // A remote authority client cannot list declarations: the manifest is then required.
    const remote = {
      mint: authority.mint.bind(authority),
      mintForTool: authority.mintForTool.bind(authority),
      exchange: authority.exchange.bind(authority),
      spawn: authority.spawn.bind(authority),
    }
    expect(() => guardTool(readDocuments, { authority: remote, verifier })).toThrow(/pass `manifest`/)
    const g = guardTool(readDocuments, { authority: remote, verifier, manifest: MANIFEST })
    await expect(g.invoke({ namespace: 'user-123' }, { context: ctx('agent-summarizer-v2') })).resolves.toBe('3 documents in user-123')
    // A tool name that cannot be a scope segment fails at set-up, not per call.
    const odd = tool(async () => 'x', { name: 'has space', schema: z.object({}) })
    expect(() => guardTool(odd, { authority, verifier })).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() => guardTool(readDocuments, { authority, verifier, ttlSeconds: 301 })).toThrowError(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
  })

  it('guardTool and guardTools validate their options', async () => {
    const { authority, verifier } = await makeKernel()
    const { readDocuments } = makeTools()
    await expectOptionMisuse(() => guardTool(readDocuments, { authority, verifier: {} as never }), { path: 'verifier' })
    await expectOptionMisuse(() => guardTool(readDocuments, { authority: undefined as never, verifier }), { path: 'authority' })
    await expectOptionMisuse(() => guardTool(readDocuments, { authority, verifier, ttlSeconds: '60' as never }), { path: 'ttlSeconds' })
    await expectOptionMisuse(() => guardTool(readDocuments, { authority, verifier, ttl: 60 } as never), { path: 'ttl' })
    await expectOptionMisuse(() => guardTools([readDocuments], { authority, verifier, [HOSTILE_KEY]: 1 } as never), {
      path: HOSTILE_KEY_PATH,
    })
  })

  it('agentTrustContext validates the caller; callerFromContext is pure', async () => {
    await expectOptionMisuse(() => agentTrustContext({ agentId: '', ...IDS }), { path: 'caller.agentId' })
    await expectOptionMisuse(() => agentTrustContext({ agentId: 'a', ...IDS, task_id: 1 as never }), { path: 'caller.task_id' })
    await expectOptionMisuse(() => agentTrustContext({ agentId: 'a', ...IDS, agentid: 'b' } as never), { path: 'caller.agentid' })
    await expectOptionMisuse(() => agentTrustContext({ agentId: 'a', ...IDS }, 'x' as never), { path: 'extra' })
    const c = agentTrustContext({ agentId: 'a', ...IDS }, { userName: 'bob' })
    expect(c).toEqual({ userName: 'bob', agentTrust: { agentId: 'a', ...IDS } })
    expect(Object.isFrozen(c.agentTrust)).toBe(true)
    expect(callerFromContext(undefined)).toBeUndefined()
    expect(callerFromContext({ agentTrust: { agentId: 'a'.repeat(256), ...IDS } })).toBeUndefined()
  })
})

describe('inside a real createAgent (no middleware)', () => {
  it('a guarded toolkit: allowed call, then an injected out-of-scope call reaches the model as a tool error', async () => {
    const { authority, verifier } = await makeKernel()
    const { calls, readDocuments, writeDocument } = makeTools()
    const tools = guardTools([readDocuments, writeDocument], { authority, verifier })
    const model = scripted([
      [{ name: 'read_documents', args: { namespace: 'user-123' } }],
      [{ name: 'write_document', args: { namespace: 'user-999', text: 'pwned' } }],
      'done',
    ])
    const agent = createAgent({ model, tools })
    const out = await agent.invoke({ messages: [new HumanMessage('summarize')] }, { context: ctx('agent-summarizer-v2') })
    const tm = toolMessages(out.messages)
    expect(tm[0]).toMatchObject({ name: 'read_documents', content: '3 documents in user-123', status: 'success' })
    // LangChain's ToolNode turns a tool's error into an error ToolMessage: the tool did not run.
    expect(tm[1]).toMatchObject({ name: 'write_document', status: 'error' })
    expect(tm[1]!.content).toMatch(/^ScopeDenied: /)
    expect(calls.runs.map((r) => r.tool)).toEqual(['read_documents'])
  })
})
