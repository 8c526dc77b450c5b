/**
 * withCapabilities: a fresh token per request, for one server only. Observed on the wire
 * (the client transport's outgoing messages), against a real guarded server.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Authority, MemoryReplayRevocationStore, type CapabilityIssuer } from 'agent-trust'
import { capabilityErrorCode, guardMcpServer, withCapabilities } from 'agent-trust/mcp'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../../support/options.js'
import { buildMcpServer, CONTEXT, MANIFEST, META_KEY, SERVER_ID, textOf, type ToolLog } from '../../support/mcp-world.js'

let authority: Authority
let store: MemoryReplayRevocationStore
let log: ToolLog
const open: Array<{ close(): Promise<void> }> = []

beforeEach(async () => {
  store = new MemoryReplayRevocationStore()
  authority = await Authority.create({ manifest: MANIFEST, store })
  log = { calls: [] }
})
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((c) => c.close()))
})

function guardedServer(serverId = SERVER_ID) {
  return guardMcpServer(buildMcpServer(log), { serverId, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, mode: 'enforce' })
}

/** Connect, recording every message the client sends. */
async function connect(client: Client, server = guardedServer()): Promise<JSONRPCMessage[]> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair()
  const sent: JSONRPCMessage[] = []
  const send = clientSide.send.bind(clientSide)
  clientSide.send = (message, options) => {
    sent.push(structuredClone(message))
    return send(message, options)
  }
  await server.connect(serverSide)
  await client.connect(clientSide)
  open.push(client, server)
  return sent
}

/** A counting issuer in front of the authority. */
function counting(issuer: CapabilityIssuer): CapabilityIssuer & { mints: number } {
  const c = {
    mints: 0,
    mint: (r: Parameters<CapabilityIssuer['mint']>[0]) => (c.mints++, issuer.mint(r)),
    mintForTool: (r: Parameters<CapabilityIssuer['mintForTool']>[0]) => (c.mints++, issuer.mintForTool(r)),
    exchange: issuer.exchange.bind(issuer),
    spawn: issuer.spawn.bind(issuer),
  }
  return c
}

const wrap = (issuer: CapabilityIssuer = authority, over: Partial<Parameters<typeof withCapabilities>[1]> = {}) =>
  withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
    issuer,
    agentId: 'agent-summarizer-v2',
    serverId: SERVER_ID,
    context: CONTEXT,
    ...over,
  })

const tokenOf = (m: JSONRPCMessage) =>
  (m as { params?: { _meta?: Record<string, unknown> } }).params?._meta?.[META_KEY] as string | undefined
const claimsOf = (t: string) =>
  JSON.parse(Buffer.from(t.split('.')[1] as string, 'base64url').toString()) as { jti: string; aud: string; scope: string[] }

describe('withCapabilities', () => {
  it('attaches a fresh, exact token to every request and none to initialize/ping', async () => {
    const client = wrap()
    const sent = await connect(client)
    await client.listTools()
    for (let i = 0; i < 3; i++) await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })
    await client.ping()
    const requests = sent.filter((m) => 'method' in m && 'id' in m) as Array<{ method: string }>
    expect(requests.map((r) => r.method)).toEqual(['initialize', 'tools/list', 'tools/call', 'tools/call', 'tools/call', 'ping'])
    expect(tokenOf(requests[0] as JSONRPCMessage)).toBeUndefined()
    expect(tokenOf(requests[5] as JSONRPCMessage)).toBeUndefined()
    const tokens = requests.slice(1, 5).map((r) => tokenOf(r as JSONRPCMessage) as string)
    expect(new Set(tokens.map((t) => claimsOf(t).jti)).size).toBe(4)
    expect(claimsOf(tokens[0] as string)).toMatchObject({ aud: SERVER_ID, scope: ['mcp:agent-database-reader:tools/list'] })
    expect(claimsOf(tokens[1] as string)).toMatchObject({ aud: SERVER_ID, scope: ['db:read:documents:namespace:user-123'] })
    expect(log.calls).toHaveLength(3)
  })

  it('overwrites a token the caller put in _meta itself', async () => {
    const client = wrap()
    const sent = await connect(client)
    const planted = await authority.mint({
      subject: 'agent-operator',
      audience: SERVER_ID,
      scope: ['db:read:documents:namespace:user-456'],
      operation: 'read',
      context: CONTEXT,
    })
    await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' }, _meta: { [META_KEY]: planted, other: 1 } })
    const last = sent.at(-1) as JSONRPCMessage
    expect(tokenOf(last)).not.toBe(planted)
    expect((last as { params: { _meta: Record<string, unknown> } }).params._meta.other).toBe(1)
  })

  it("a mint refusal rejects with the authority's code and sends nothing", async () => {
    const client = wrap()
    const sent = await connect(client)
    const before = sent.length
    const err = await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-456' } }).catch((e: unknown) => e)
    expect(capabilityErrorCode(err)).toBe('ERR_SCOPE_DENIED')
    expect(sent.length).toBe(before)
  })

  it('a server denial surfaces its code through capabilityErrorCode', async () => {
    const client = new Client({ name: 'raw', version: '1.0.0' })
    await connect(client)
    const err = await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } }).catch((e: unknown) => e)
    expect(capabilityErrorCode(err)).toBe('ERR_TOKEN_MISSING')
    expect(capabilityErrorCode(new Error('x'))).toBeUndefined()
  })

  it('never sends a token to a server advertising another audience: refused before minting', async () => {
    const issuer = counting(authority)
    const client = wrap(issuer)
    await connect(client, guardedServer('agent-other-server'))
    await expect(client.callTool({ name: 'echo', arguments: { message: 'hi' } })).rejects.toMatchObject({ code: 'ERR_TOKEN_AUDIENCE' })
    expect(issuer.mints).toBe(0)
  })

  it('with requireAdvertisedAudience, refuses a server that does not advertise one', async () => {
    const issuer = counting(authority)
    const client = wrap(issuer, { requireAdvertisedAudience: true })
    await connect(client, buildMcpServer(log))
    await expect(client.callTool({ name: 'echo', arguments: { message: 'hi' } })).rejects.toMatchObject({ code: 'ERR_TOKEN_AUDIENCE' })
    expect(issuer.mints).toBe(0)
  })

  it('stays bound to its first transport: reconnected elsewhere, it refuses before minting', async () => {
    const issuer = counting(authority)
    const client = wrap(issuer)
    await connect(client)
    await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })
    await client.close()
    await connect(client, buildMcpServer(log))
    await expect(client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })).rejects.toMatchObject({
      code: 'ERR_TOKEN_AUDIENCE',
    })
    expect(issuer.mints).toBe(1)
  })

  it('calls the context function per request', async () => {
    let n = 0
    const client = wrap(authority, { context: () => ({ ...CONTEXT, task_id: `task-${++n}` }) })
    const sent = await connect(client)
    await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })
    await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })
    const tasks = sent
      .filter((m) => tokenOf(m) !== undefined)
      .map((m) => (claimsOf(tokenOf(m) as string) as unknown as { context: { task_id: string } }).context.task_id)
    expect(tasks).toEqual(['task-1', 'task-2'])
    expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'x' } }))).toBe('x')
  })

  it('validates its options; refuses double wrapping', async () => {
    const ok = { issuer: authority, agentId: 'a', serverId: 's', context: CONTEXT }
    await expectOptionMisuse(() => withCapabilities({} as Client, ok), { path: 'client' })
    await expectOptionMisuse(() => wrap(authority, { serverId: '' }), { path: 'options.serverId' })
    await expectOptionMisuse(() => wrap({ mint: () => 'x' } as never), { path: 'options.issuer' })
    await expectOptionMisuse(() => wrap(authority, { ttlSeconds: '60' as never }), { path: 'options.ttlSeconds' })
    await expectOptionMisuse(() => withCapabilities(new Client({ name: 'c', version: '1' }), { ...ok, context: undefined as never }), {
      path: 'options.context',
    })
    await expectOptionMisuse(() => wrap(authority, { serverID: 's' } as never), { path: 'options.serverID' })
    await expectOptionMisuse(() => wrap(authority, { [HOSTILE_KEY]: 1 } as never), { path: `options${HOSTILE_KEY_PATH}` })
    const client = wrap()
    expect(() =>
      withCapabilities(client, { issuer: authority, agentId: 'agent-summarizer-v2', serverId: SERVER_ID, context: CONTEXT }),
    ).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
  })
})
