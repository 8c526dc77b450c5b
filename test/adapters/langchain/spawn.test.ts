/** Sub-agent spawns through authority.spawn, with the child running as itself. */
import { AIMessage, HumanMessage } from '@langchain/core/messages'
import { tool, type StructuredToolInterface } from '@langchain/core/tools'
import { createAgent, type AgentMiddleware } from 'langchain'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import {
  agentAsTool,
  agentTrustMiddleware,
  callerFromContext,
  guardTools,
  handoffTool,
  runSubagent,
  taskTool,
  type SubagentDefinition,
} from 'agent-trust/langchain'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../../support/options.js'
import { ctx, JWS_SHAPE, makeKernel, makeTools, scripted, strings, toolMessages } from '../../support/langchain.js'

const ask = { messages: [new HumanMessage('please read user-123 and user-456')] }

type Kernel = Awaited<ReturnType<typeof makeKernel>>

/**
 * A child agent: guarded document tools, plus an unguarded `whoami` probe that records the
 * context it runs in. With `middleware`, every tool (the probe too) goes through the check.
 */
function makeChild(k: Kernel, turns: Parameters<typeof scripted>[0], options: { middleware?: boolean } = {}) {
  const { calls, readDocuments, writeDocument } = makeTools()
  const seen: unknown[] = []
  const whoami = tool(
    async (_args, config) => {
      const c = config as { context?: unknown; configurable?: unknown; metadata?: unknown }
      seen.push({ context: c.context, configurable: c.configurable, metadata: c.metadata })
      return String(callerFromContext((config as { context?: unknown }).context)?.agentId)
    },
    { name: 'whoami', description: 'who runs', schema: z.object({}) },
  )
  const model = scripted(turns)
  const middleware: AgentMiddleware[] =
    options.middleware === true ? [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier, onDenied: 'soft' })] : []
  const tools: StructuredToolInterface[] = [
    ...guardTools([readDocuments, writeDocument], { authority: k.authority, verifier: k.verifier }),
    whoami,
  ]
  const agent = createAgent({ model, tools, middleware })
  return { agent, calls, seen, model }
}

const READER: SubagentDefinition['child'] = { trustLevel: 'L2', grants: ['db:read:documents:namespace:user-456'] }

describe('agent wrapped as a tool', () => {
  it('an L3 parent spawns an L2 child that runs as itself, with a narrowed context', async () => {
    const k = await makeKernel()
    const child = makeChild(k, [
      [{ name: 'whoami', args: {} }],
      [{ name: 'read_documents', args: { namespace: 'user-456' } }],
      'child read user-456',
    ])
    const researcher = agentAsTool(
      { name: 'researcher', description: 'reads documents', agent: child.agent, child: READER },
      { authority: k.authority },
    )
    const parentModel = scripted([[{ name: 'researcher', args: { input: 'read user-456' } }], 'parent done'])
    const parent = createAgent({
      model: parentModel,
      tools: [researcher],
      middleware: [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier })],
    })
    const out = await parent.invoke(ask, {
      context: ctx('agent-orchestrator'),
      configurable: { thread_id: 'parent-thread', secret_flag: 'parent-only' },
    })
    expect(toolMessages(out.messages)).toEqual([{ name: 'researcher', content: 'child read user-456', status: 'success' }])

    const spawn = k.audit.events.find((e) => e.action === 'spawn')!
    expect(spawn).toMatchObject({
      decision: 'allow',
      origin: 'agent-orchestrator',
      trustLevel: 'L2',
      capability: ['db:read:documents:namespace:user-456'],
    })
    const childId = spawn.destination!
    expect(childId).toMatch(/^agent-orchestrator\.researcher\.[0-9a-f-]{36}$/)
    // Its run over, the child is retired: forgotten, its slot freed, every token of it refused.
    expect(k.authority.agent(childId)).toBeUndefined()
    expect(k.audit.events.find((e) => e.action === 'revoke' && e.destination === childId)).toMatchObject({
      decision: 'allow',
      origin: 'agent-orchestrator',
      note: 'retired',
    })
    // The child's tool call ran as the child, not the parent.
    expect(k.audit.events.filter((e) => e.action === 'tool_call').map((e) => e.origin)).toEqual([childId])
    // Its context holds its own identity and the audit ids; nothing else of the parent's config.
    expect(child.seen).toHaveLength(1)
    const seen = child.seen[0] as { context: Record<string, unknown>; configurable: Record<string, unknown> }
    expect(seen.context).toEqual({ agentTrust: { agentId: childId, session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' } })
    expect(seen.configurable.thread_id).toBeUndefined()
    expect(seen.configurable.secret_flag).toBeUndefined()
    // Nothing of the parent's: no identity, no token, no configurable value (LangChain copies those into metadata too).
    expect(
      strings(child.seen).some((s) => JWS_SHAPE.test(s) || s === 'agent-orchestrator' || s === 'parent-only' || s === 'parent-thread'),
    ).toBe(false)
    // Each spawn is a fresh child, never a reused id.
    const twice = makeChild(k, ['first', 'second'])
    const again = agentAsTool({ name: 'again', description: 'x', agent: twice.agent, child: READER }, { authority: k.authority })
    await expect(again.invoke({ input: 'a' }, { context: ctx('agent-orchestrator') })).resolves.toBe('first')
    await expect(again.invoke({ input: 'b' }, { context: ctx('agent-orchestrator') })).resolves.toBe('second')
    const spawns = k.audit.events.filter((e) => e.action === 'spawn' && e.decision === 'allow').map((e) => e.destination)
    expect(spawns).toHaveLength(3)
    expect(new Set(spawns).size).toBe(3)
  })

  it('without the spawn, a child run inside a tool inherits the parent (the leak this module closes)', async () => {
    const k = await makeKernel()
    const child = makeChild(k, [[{ name: 'whoami', args: {} }], 'x'])
    // A naive agent-as-tool: invokes the child directly.
    const naive = tool(
      async ({ input }) => {
        await child.agent.invoke({ messages: [new HumanMessage(input)] })
        return 'ok'
      },
      { name: 'naive', description: 'x', schema: z.object({ input: z.string() }) },
    )
    const parent = createAgent({ model: scripted([[{ name: 'naive', args: { input: 'x' } }], 'done']), tools: [naive] })
    await parent.invoke(ask, { context: ctx('agent-orchestrator') })
    expect(callerFromContext((child.seen[0] as { context: unknown }).context)?.agentId).toBe('agent-orchestrator')
  })

  it("a child that tries to use its parent's capabilities is denied, as itself", async () => {
    const k = await makeKernel()
    // user-123 is the parent's (db:read:documents:namespace:*), not the child's.
    const child = makeChild(
      k,
      [
        [{ name: 'read_documents', args: { namespace: 'user-123' } }],
        [{ name: 'write_document', args: { namespace: 'user-456', text: 'x' } }],
        'child gave up',
      ],
      {
        middleware: true,
      },
    )
    const researcher = agentAsTool(
      { name: 'researcher', description: 'reads', agent: child.agent, child: READER },
      { authority: k.authority },
    )
    const parent = createAgent({
      model: scripted([[{ name: 'researcher', args: { input: 'read user-123' } }], 'parent done']),
      tools: [researcher],
    })
    const out = await parent.invoke(ask, { context: ctx('agent-orchestrator') })
    expect(out.messages.at(-1)!.content).toBe('parent done')
    expect(child.calls.runs).toHaveLength(0)
    const childId = k.audit.events.find((e) => e.action === 'spawn')!.destination
    const denials = k.audit.events.filter((e) => e.decision === 'deny')
    expect(denials.map((e) => [e.origin, e.code, e.capability?.[0]])).toEqual([
      [childId, 'ERR_SCOPE_DENIED', 'db:read:documents:namespace:user-123'],
      [childId, 'ERR_SCOPE_DENIED', 'db:write:documents:namespace:user-456'],
    ])
    // The child model saw soft denials naming the code.
    const childMessages = child.model.calls.at(-1)!.messages
    expect(toolMessages(childMessages).map((m) => m.content.slice(0, 52))).toEqual([
      'agent-trust denied this tool call: ERR_SCOPE_DENIED.',
      'agent-trust denied this tool call: ERR_SCOPE_DENIED.',
    ])
  })

  it('revoking the parent revokes the spawned child', async () => {
    const k = await makeKernel()
    const { readDocuments } = makeTools()
    const [read] = guardTools([readDocuments], { authority: k.authority, verifier: k.verifier })
    let childId = ''
    const childAgent = {
      invoke: async (_input: unknown, config?: Record<string, unknown>) => {
        childId = callerFromContext(config?.context)!.agentId
        await k.authority.revokeAgent('agent-orchestrator')
        return { messages: [new HumanMessage(await read!.invoke({ namespace: 'user-456' }, { context: config?.context }))] }
      },
    }
    const run = runSubagent(
      { name: 'r', description: 'r', agent: childAgent, child: READER },
      { parentContext: ctx('agent-orchestrator'), messages: [] },
      { authority: k.authority },
    )
    await expect(run).rejects.toMatchObject({ code: 'ERR_AGENT_REVOKED' })
    // The failed run still retires the child: it is gone from the authority and from the store.
    expect(k.authority.agent(childId)).toBeUndefined()
    const mint = k.authority.mint({
      subject: childId,
      audience: 'agent-orchestrator',
      scope: ['db:read:documents:namespace:user-456'],
      operation: 'read',
      context: { session_id: 's', user_id: 'u', task_id: 't' },
    })
    await expect(mint).rejects.toMatchObject({
      code: 'ERR_AGENT_UNKNOWN',
    })
  })
})

describe('children retired when their run ends', () => {
  const echo = { invoke: async () => ({ messages: [new AIMessage('done')] }) }
  const failing = {
    invoke: async () => {
      throw new Error('child crashed')
    },
  }
  const run = (k: Awaited<ReturnType<typeof makeKernel>>, agent: typeof echo, retireAfterRun?: boolean) =>
    runSubagent(
      { name: 'r', description: 'r', agent, child: READER },
      { parentContext: ctx('agent-orchestrator'), messages: [] },
      { authority: k.authority, ...(retireAfterRun === undefined ? {} : { retireAfterRun }) },
    )

  it('a parent that starts a sub-agent per call never reaches its child cap; returned or thrown', async () => {
    const k = await makeKernel({ maxChildrenPerParent: 2 })
    for (let i = 0; i < 6; i++) {
      if (i % 2 === 0) await run(k, echo)
      else await expect(run(k, failing)).rejects.toThrow('child crashed')
    }
    const spawned = k.audit.events.filter((e) => e.action === 'spawn' && e.decision === 'allow').map((e) => e.destination)
    const retired = k.audit.events.filter((e) => e.action === 'revoke' && e.note === 'retired').map((e) => e.destination)
    expect(spawned).toHaveLength(6)
    expect(retired).toEqual(spawned)
  })

  it('with retireAfterRun: false the children stay, and the cap holds', async () => {
    const k = await makeKernel({ maxChildrenPerParent: 2 })
    await run(k, echo, false)
    await run(k, echo, false)
    await expect(run(k, echo, false)).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED', details: { rule: 'maxChildrenPerParent' } })
  })

  it('a retirement that fails fails the run (the child may still hold tokens)', async () => {
    const k = await makeKernel()
    const issuer = {
      spawn: (r: Parameters<typeof k.authority.spawn>[0]) => k.authority.spawn(r),
      retire: async () => {
        throw Object.assign(new Error('store down'), { code: 'ERR_STORE_UNAVAILABLE' })
      },
    }
    const out = runSubagent(
      { name: 'r', description: 'r', agent: echo, child: READER },
      { parentContext: ctx('agent-orchestrator'), messages: [] },
      { authority: issuer as never },
    )
    await expect(out).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' })
  })
})

describe('spawn refusals are coded and audited', () => {
  const cases: Array<{ what: string; parent: string; child: SubagentDefinition['child']; code: string }> = [
    {
      what: 'an L2 agent trying to spawn',
      parent: 'agent-summarizer-v2',
      child: { trustLevel: 'L1', grants: [] },
      code: 'ERR_SPAWN_DENIED',
    },
    {
      what: 'an L1 agent trying to spawn',
      parent: 'agent-status-reader',
      child: { trustLevel: 'L1', grants: [] },
      code: 'ERR_SPAWN_DENIED',
    },
    { what: 'an unknown parent', parent: 'agent-nobody', child: { trustLevel: 'L1', grants: [] }, code: 'ERR_SPAWN_DENIED' },
    {
      what: "an L3 child with egress beyond its parent's",
      parent: 'agent-orchestrator',
      child: { trustLevel: 'L3', grants: [], egress: ['https://external-api.com'] },
      code: 'ERR_SPAWN_ESCALATION',
    },
    {
      what: "a child with grants beyond its parent's",
      parent: 'agent-orchestrator',
      child: { trustLevel: 'L2', grants: ['admin:*'] },
      code: 'ERR_SCOPE_ESCALATION',
    },
    {
      what: "a child with a wildcard wider than the parent's grant",
      parent: 'agent-orchestrator',
      child: { trustLevel: 'L2', grants: ['db:*:documents:namespace:*'] },
      code: 'ERR_SCOPE_ESCALATION',
    },
    {
      what: 'a child as deep as its parent',
      parent: 'agent-orchestrator',
      child: { trustLevel: 'L2', grants: [], maxDelegationDepth: 2 },
      code: 'ERR_DELEGATION_DEPTH',
    },
  ]
  for (const c of cases) {
    it(`${c.what}: ${c.code}`, async () => {
      const k = await makeKernel()
      const child = makeChild(k, ['never runs'])
      const sub = agentAsTool({ name: 'helper', description: 'h', agent: child.agent, child: c.child }, { authority: k.authority })
      // Fail-closed parent: the run stops with the code.
      const parent = createAgent({
        model: scripted([[{ name: 'helper', args: { input: 'go' } }], 'x']),
        tools: [sub],
        middleware: [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier })],
      })
      await expect(parent.invoke(ask, { context: ctx(c.parent) })).rejects.toMatchObject({ code: c.code })
      expect(child.model.callCount).toBe(0)
      expect(k.audit.events.filter((e) => e.action === 'spawn')).toMatchObject([{ decision: 'deny', code: c.code, origin: c.parent }])
      expect(k.authority.manifest.agents.length).toBe(k.authority.registry.ids().length)
    })
  }

  it('an L3 child of an L3 parent (equal level) is allowed: the level bound is <=', async () => {
    const k = await makeKernel()
    const child = makeChild(k, ['ok'])
    const run = await runSubagent(
      {
        name: 'peer',
        description: 'p',
        agent: child.agent,
        child: { trustLevel: 'L3', grants: ['db:read:documents:namespace:*'], maxDelegationDepth: 1 },
      },
      { parentContext: ctx('agent-orchestrator'), messages: [new HumanMessage('x')] },
      { authority: k.authority },
    )
    expect(run.child).toMatchObject({ trustLevel: 'L3', parent: 'agent-orchestrator' })
    expect(run.text).toBe('ok')
  })

  it('no parent identity in the context: ERR_SPAWN_DENIED; soft mode tells the model', async () => {
    const k = await makeKernel()
    const child = makeChild(k, ['never'])
    await expect(
      runSubagent(
        { name: 'x', description: 'x', agent: child.agent, child: READER },
        { parentContext: { configurable: 'nope' }, messages: [] },
        { authority: k.authority },
      ),
    ).rejects.toMatchObject({
      code: 'ERR_SPAWN_DENIED',
    })
    const sub = agentAsTool(
      { name: 'helper', description: 'h', agent: child.agent, child: { trustLevel: 'L1', grants: [] } },
      { authority: k.authority },
    )
    const parent = createAgent({
      model: scripted([[{ name: 'helper', args: { input: 'go' } }], 'ok then']),
      tools: [sub],
      middleware: [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier, onDenied: 'soft' })],
    })
    const out = await parent.invoke(ask, { context: ctx('agent-summarizer-v2') })
    expect(toolMessages(out.messages)[0]!.content).toMatch(/^agent-trust denied this tool call: ERR_SPAWN_DENIED\./)
    expect(out.messages.at(-1)!.content).toBe('ok then')
  })

  it('bad definitions fail at set-up', async () => {
    const k = await makeKernel()
    const agent = makeChild(k, ['x']).agent
    expect(() => agentAsTool({ name: 'bad name', description: 'x', agent, child: READER }, { authority: k.authority })).toThrowError(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
    expect(() =>
      agentAsTool({ name: 'ok', description: 'x', agent, child: { trustLevel: 'L9' } as never }, { authority: k.authority }),
    ).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() =>
      agentAsTool(
        { name: 'ok', description: 'x', agent, child: { ...READER, parent: 'agent-orchestrator' } as never },
        { authority: k.authority },
      ),
    ).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    expect(() => agentAsTool({ name: 'ok', description: 'x', agent, child: READER }, {} as never)).toThrowError(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
    expect(() => taskTool([], { authority: k.authority })).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    const d = { name: 'dup', description: 'x', agent, child: READER }
    expect(() => taskTool([d, d], { authority: k.authority })).toThrowError(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
  })

  it('validates its options', async () => {
    const k = await makeKernel()
    const def = { name: 'ok', description: 'x', agent: makeChild(k, ['x']).agent, child: READER }
    await expectOptionMisuse(() => agentAsTool(def, {} as never), { path: 'authority' })
    await expectOptionMisuse(() => agentAsTool(def, { authority: k.authority, childId: 'x' as never }), { path: 'childId' })
    await expectOptionMisuse(() => handoffTool(def, { authority: k.authority, childID: () => 'x' } as never), { path: 'childID' })
    await expectOptionMisuse(() => taskTool([def], { authority: k.authority, name: 1 as never }), { path: 'name' })
    await expectOptionMisuse(() => taskTool([def], { authority: k.authority, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
  })
})

describe('task tool and supervisor hand-offs', () => {
  it('task: the model picks a named sub-agent; an unknown name never spawns', async () => {
    const k = await makeKernel()
    const reader = makeChild(k, [[{ name: 'read_documents', args: { namespace: 'user-456' } }], 'read it'])
    const writer = makeChild(k, ['wrote it'])
    const task = taskTool(
      [
        { name: 'reader', description: 'reads', agent: reader.agent, child: READER },
        {
          name: 'writer',
          description: 'writes',
          agent: writer.agent,
          child: { trustLevel: 'L2', grants: ['db:write:documents:namespace:user-456'] },
        },
      ],
      { authority: k.authority },
    )
    expect(task.name).toBe('task')
    const parent = createAgent({
      model: scripted([
        [{ name: 'task', args: { subagent_type: 'reader', description: 'read user-456' } }],
        [{ name: 'task', args: { subagent_type: 'admin', description: 'x' } }],
        'done',
      ]),
      tools: [task],
      middleware: [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier, onDenied: 'soft' })],
    })
    const out = await parent.invoke(ask, { context: ctx('agent-orchestrator') })
    const tm = toolMessages(out.messages)
    expect(tm[0]).toMatchObject({ content: 'read it', status: 'success' })
    expect(tm[1]!.status).toBe('error') // schema: subagent_type is an enum
    expect(reader.calls.runs).toHaveLength(1)
    expect(writer.model.callCount).toBe(0)
    expect(k.audit.events.filter((e) => e.action === 'spawn').map((e) => e.decision)).toEqual(['allow'])
    // An L2 caller cannot use the task tool to spawn either.
    const l2 = createAgent({
      model: scripted([[{ name: 'task', args: { subagent_type: 'reader', description: 'x' } }], 'x']),
      tools: [task],
      middleware: [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier })],
    })
    await expect(l2.invoke(ask, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
  })

  it("transfer_to_<name>: the worker is spawned as the supervisor's child and gets only the user's messages", async () => {
    const k = await makeKernel()
    const worker = makeChild(k, [[{ name: 'whoami', args: {} }], 'worker answer'])
    const handoff = handoffTool(
      {
        name: 'math_worker',
        description: 'does math',
        agent: worker.agent,
        child: { trustLevel: 'L1', grants: ['db:read:documents:namespace:user-123'] },
      },
      { authority: k.authority },
    )
    expect(handoff.name).toBe('transfer_to_math_worker')
    const supervisor = createAgent({
      model: scripted([[{ name: 'transfer_to_math_worker', args: { note: 'focus on totals' } }], 'supervisor relays: worker answer']),
      tools: [handoff],
      middleware: [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier })],
    })
    const out = await supervisor.invoke(ask, { context: ctx('agent-orchestrator') })
    expect(toolMessages(out.messages)[0]).toMatchObject({ name: 'transfer_to_math_worker', content: 'worker answer', status: 'success' })
    const firstWorkerCall = worker.model.calls[0]!.messages
    expect(firstWorkerCall.map((m) => [m.getType(), m.content])).toEqual([
      ['human', 'please read user-123 and user-456'],
      ['human', 'focus on totals'],
    ])
    const childId = k.audit.events.find((e) => e.action === 'spawn' && e.decision === 'allow')!.destination
    expect(callerFromContext((worker.seen[0] as { context: unknown }).context)?.agentId).toBe(childId)
    // A non-L3 supervisor cannot hand off.
    const l2 = createAgent({
      model: scripted([[{ name: 'transfer_to_math_worker', args: {} }], 'x']),
      tools: [handoff],
      middleware: [agentTrustMiddleware({ authority: k.authority, verifier: k.verifier })],
    })
    await expect(l2.invoke(ask, { context: ctx('agent-summarizer-v2') })).rejects.toMatchObject({ code: 'ERR_SPAWN_DENIED' })
  })
})
