/**
 * guardMcpServer with the SDK's own Client over the SDK's InMemoryTransport: every check
 * and an attack on each.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { CallToolRequestSchema, EmptyResultSchema, ListToolsRequestSchema, PingRequestSchema } from '@modelcontextprotocol/sdk/types.js'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Authority, MemoryAuditLog, MemoryReplayRevocationStore } from 'agent-trust'
import { createVerifier } from 'agent-trust'
import { CAPABILITY_DENIED, guardMcpServer, withCapabilities } from 'agent-trust/mcp'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../../support/options.js'
import {
  buildLowLevelServer,
  buildMcpServer,
  CONTEXT,
  MANIFEST,
  META_KEY,
  registerDbTools,
  registerLowLevelHandlers,
  SERVER_ID,
  textOf,
  type ToolLog,
} from '../../support/mcp-world.js'
import { callWithToken, deniedWith, useMcpKit } from '../../support/mcp-kit.js'

let authority: Authority
let store: MemoryReplayRevocationStore
let audit: MemoryAuditLog
let log: ToolLog
const kit = useMcpKit((w) => ({ authority, store, audit, log } = w))
const { guard } = kit

const connect = (server: McpServer | Server, client = new Client({ name: 'test-client', version: '1.0.0' })): Promise<Client> =>
  kit.connect(server, client, () => InMemoryTransport.createLinkedPair())

const { mintRead } = kit
const call = callWithToken
const denied = deniedWith

describe('methods that need no capability', () => {
  it('a ping handler never sees a token sent along with it', async () => {
    const server = buildLowLevelServer(log)
    const seen: unknown[] = []
    server.setRequestHandler(PingRequestSchema, async (request, extra) => {
      seen.push(request.params?._meta, extra._meta)
      return {}
    })
    const client = await connect(guard(server))
    const token = await mintRead()
    await client.request({ method: 'ping', params: { _meta: { [META_KEY]: token, progressToken: 1 } } }, EmptyResultSchema)
    expect(seen).toHaveLength(2)
    expect(JSON.stringify(seen)).not.toContain(token)
    expect(seen[0]).toEqual({ progressToken: 1 })
  })
})

describe('guardMcpServer on an McpServer (in memory)', () => {
  it('allows a call whose token carries the exact scope, and the tool never sees the token', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const result = await call(client, await mintRead())
    expect(JSON.parse(textOf(result))).toEqual(['q3-report.txt', 'notes.md'])
    expect(log.calls).toEqual([{ tool: 'read_documents', args: { namespace: 'user-123' }, tokenVisible: false }])
  })

  it('denies with a JSON-RPC error carrying the stable code, not an isError tool result, and the tool does not run', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const err = await call(client, undefined).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: CAPABILITY_DENIED, data: { code: 'ERR_TOKEN_MISSING' } })
    expect((err as Error).message).not.toContain('isError')
    expect(log.calls).toHaveLength(0)
  })

  it('attack: a token minted for another server', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-other-server',
      scope: ['tool:agent-other-server:echo'],
      operation: 'execute',
      context: CONTEXT,
    })
    await expect(call(client, token)).rejects.toMatchObject(denied('ERR_TOKEN_AUDIENCE'))
    expect(log.calls).toHaveLength(0)
  })

  it('attack: a token for another tool of this server', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const echo = (
      await authority.mintForTool({
        subject: 'agent-summarizer-v2',
        audience: SERVER_ID,
        tool: 'echo',
        args: { message: 'hi' },
        context: CONTEXT,
      })
    ).token
    await expect(call(client, echo)).rejects.toMatchObject(denied('ERR_SCOPE_DENIED'))
    expect(log.calls).toHaveLength(0)
  })

  it('attack: a token for other arguments (another namespace)', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    await expect(call(client, await mintRead('user-123'), { namespace: 'user-456' })).rejects.toMatchObject(denied('ERR_SCOPE_DENIED'))
    expect(log.calls).toHaveLength(0)
  })

  it('attack: a replayed token', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const token = await mintRead()
    await call(client, token)
    await expect(call(client, token)).rejects.toMatchObject(denied('ERR_TOKEN_REPLAYED'))
    expect(log.calls).toHaveLength(1)
  })

  it('attack: a token lifted from one request into another (into tools/list, into another call after use)', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const lifted = await mintRead()
    // An unused call token does not open tools/list...
    await expect(client.listTools({ _meta: { [META_KEY]: lifted } })).rejects.toMatchObject(denied('ERR_SCOPE_DENIED'))
    // ...and the attempt consumed it: it cannot be used for its own call afterwards either.
    await expect(call(client, lifted)).rejects.toMatchObject(denied('ERR_TOKEN_REPLAYED'))
    // A token seen on the wire for one call cannot be moved onto another.
    const seen = await mintRead()
    await call(client, seen)
    await expect(call(client, seen, { namespace: 'user-123' }, 'echo')).rejects.toMatchObject(denied('ERR_TOKEN_REPLAYED'))
  })

  it('attack: an L1 agent calling an execute tool (server side), and asking the authority for one (refused at mint)', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    // The L1 agent obtains a token carrying the purge scope by asking for a "read" operation.
    const token = await authority.mint({
      subject: 'agent-status-reader',
      audience: SERVER_ID,
      scope: ['db:admin:purge:namespace:user-123'],
      operation: 'read',
      context: CONTEXT,
    })
    await expect(call(client, token, { namespace: 'user-123' }, 'purge_namespace')).rejects.toMatchObject(denied('ERR_TRUST_LEVEL'))
    const wrapped = withCapabilities(new Client({ name: 'l1', version: '1.0.0' }), {
      issuer: authority,
      agentId: 'agent-status-reader',
      serverId: SERVER_ID,
      context: CONTEXT,
    })
    await connect(guard(buildMcpServer(log)), wrapped)
    await expect(wrapped.callTool({ name: 'purge_namespace', arguments: { namespace: 'user-123' } })).rejects.toMatchObject({
      code: 'ERR_TRUST_LEVEL',
    })
    expect(log.calls).toHaveLength(0)
  })

  it('attack: a revoked agent (token minted before the revocation) and a revoked token', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const before = await mintRead()
    const single = await mintRead()
    await authority.revokeToken(JSON.parse(Buffer.from(single.split('.')[1] as string, 'base64url').toString()).jti)
    await expect(call(client, single)).rejects.toMatchObject(denied('ERR_TOKEN_REVOKED'))
    await authority.revokeAgent('agent-summarizer-v2')
    await expect(call(client, before)).rejects.toMatchObject(denied('ERR_AGENT_REVOKED'))
    expect(log.calls).toHaveLength(0)
  })

  it('attack: garbage in the token slot is always a coded denial and never runs the tool (property)', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.json(), fc.constantFrom('a.b.c', 'eyJhbGciOiJub25lIn0.e30.', '')), async (junk) => {
        const err = await call(client, junk).catch((e: unknown) => e)
        expect(err).toMatchObject({ code: CAPABILITY_DENIED })
        expect(String((err as { data: { code: string } }).data.code)).toMatch(/^ERR_/)
      }),
      { numRuns: 60 },
    )
    expect(log.calls).toHaveLength(0)
  })

  it('an argument that cannot form a scope segment is ERR_SCOPE_INVALID (it can never widen the scope)', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    for (const namespace of ['user-123:*', '*', '', 'a b']) {
      await expect(call(client, await mintRead(), { namespace })).rejects.toMatchObject(denied('ERR_SCOPE_INVALID'))
    }
    const event = audit.events.at(-1)
    expect(event).toMatchObject({
      action: 'tool_call',
      decision: 'deny',
      code: 'ERR_SCOPE_INVALID',
      destination: SERVER_ID,
      tool: 'read_documents',
    })
    expect(typeof event?.argsHash).toBe('string')
  })

  it('an undeclared tool is execute with scope tool:<server>:<name>', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const { token, scope, operation } = await authority.mintForTool({
      subject: 'agent-summarizer-v2',
      audience: SERVER_ID,
      tool: 'echo',
      args: { message: 'hi' },
      context: CONTEXT,
    })
    expect({ scope, operation }).toEqual({ scope: 'tool:agent-database-reader:echo', operation: 'execute' })
    expect(textOf(await call(client, token, { message: 'hi' }, 'echo'))).toBe('hi')
  })

  it('tools/list needs a token for mcp:<server>:tools/list and shows each caller only what it may call', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    await expect(client.listTools()).rejects.toMatchObject(denied('ERR_TOKEN_MISSING'))
    const list = (agent: string) =>
      authority.mint({
        subject: agent,
        audience: SERVER_ID,
        scope: ['mcp:agent-database-reader:tools/list'],
        operation: 'read',
        context: CONTEXT,
      })
    const names = async (agent: string) =>
      (await client.listTools({ _meta: { [META_KEY]: await list(agent) } })).tools.map((t) => t.name).sort()
    expect(await names('agent-summarizer-v2')).toEqual(['echo', 'read_documents'])
    // L1 holds the purge grant, but its level forbids execute: purge is not listed.
    expect(await names('agent-status-reader')).toEqual(['read_documents'])
    expect(await names('agent-operator')).toEqual(['echo', 'purge_namespace', 'read_documents'])
  })

  it('records every decision, allowed and denied, with origin, destination, tool, scope, code and jti', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    const token = await mintRead()
    await call(client, token)
    await call(client, token).catch(() => undefined)
    const events = audit.events.filter((e) => e.action === 'tool_call')
    expect(events).toHaveLength(2)
    expect(events[0]).toMatchObject({
      decision: 'allow',
      origin: 'agent-summarizer-v2',
      destination: SERVER_ID,
      tool: 'read_documents',
      capability: ['db:read:documents:namespace:user-123'],
      trustLevel: 'L2',
    })
    expect(events[1]).toMatchObject({
      decision: 'deny',
      code: 'ERR_TOKEN_REPLAYED',
      destination: SERVER_ID,
      tool: 'read_documents',
      jti: events[0]?.jti,
    })
    expect(JSON.stringify(audit.events)).not.toContain(token)
  })

  it('guards tools registered after the guard (McpServer installs its handlers lazily)', async () => {
    const server = guard(buildMcpServer(log, { registerTools: false }))
    registerDbTools(server, log)
    const client = await connect(server)
    await expect(call(client, undefined)).rejects.toMatchObject(denied('ERR_TOKEN_MISSING'))
    expect(JSON.parse(textOf(await call(client, await mintRead())))).toHaveLength(2)
  })

  it('audit mode records the denial and lets the call through; off skips the checks', async () => {
    const client = await connect(guard(buildMcpServer(log), { mode: 'audit' }))
    await call(client, undefined)
    expect(log.calls).toHaveLength(1)
    expect(audit.events.at(-1)).toMatchObject({ decision: 'deny', code: 'ERR_TOKEN_MISSING', enforced: false })
    const offLog: ToolLog = { calls: [] }
    const offClient = await connect(guard(buildMcpServer(offLog), { mode: 'off' }))
    await call(offClient, 'not-a-token')
    expect(offLog.calls).toEqual([{ tool: 'read_documents', args: { namespace: 'user-123' }, tokenVisible: false }])
  })

  it('advertises its audience in capabilities.experimental', async () => {
    const client = await connect(guard(buildMcpServer(log)))
    expect(client.getServerCapabilities()?.experimental?.['io.agent-trust']).toEqual({ audience: SERVER_ID, metaKey: META_KEY })
  })
})

describe('guardMcpServer on a low-level Server (in memory)', () => {
  it('guards handlers set before the guard', async () => {
    const client = await connect(guard(buildLowLevelServer(log)))
    await expect(call(client, undefined)).rejects.toMatchObject(denied('ERR_TOKEN_MISSING'))
    expect(JSON.parse(textOf(await call(client, await mintRead())))).toEqual(['q3-report.txt', 'notes.md'])
    expect(log.calls[0]?.tokenVisible).toBe(false)
  })

  it('guards handlers set after the guard, and replaced ones', async () => {
    const server = guard(buildLowLevelServer(log, { registerHandlers: false }))
    registerLowLevelHandlers(server, log)
    server.setRequestHandler(CallToolRequestSchema, async () => ({ content: [{ type: 'text', text: 'replaced' }] }))
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [] }))
    const client = await connect(server)
    await expect(call(client, undefined)).rejects.toMatchObject(denied('ERR_TOKEN_MISSING'))
    await expect(client.listTools()).rejects.toMatchObject(denied('ERR_TOKEN_MISSING'))
    expect(textOf(await call(client, await mintRead()))).toBe('replaced')
  })

  it('guards a fallback request handler too', async () => {
    const server = guard(buildLowLevelServer(log, { registerHandlers: false }))
    server.fallbackRequestHandler = async () => ({ content: [{ type: 'text', text: 'fallback' }] })
    const client = await connect(server)
    await expect(call(client, undefined)).rejects.toMatchObject(denied('ERR_TOKEN_MISSING'))
    expect(textOf(await call(client, await mintRead()))).toBe('fallback')
  })

  it('ping and initialize need no token', async () => {
    const client = await connect(guard(buildLowLevelServer(log)))
    await expect(client.ping()).resolves.toEqual({})
  })
})

describe('guardMcpServer options', () => {
  it('refuses to guard twice, and refuses bad options at build time', async () => {
    const server = guard(buildMcpServer(log))
    expect(() => guard(server)).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    await expectOptionMisuse(() => guardMcpServer(buildMcpServer(log), { serverId: SERVER_ID } as never), { path: 'issuers' })
    expect(() =>
      guardMcpServer(buildMcpServer(log), { serverId: 'no-such-server', issuers: [authority.trustedIssuer()], manifest: MANIFEST }),
    ).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
    const verifier = createVerifier({ id: SERVER_ID, issuers: [authority.trustedIssuer()], mode: 'enforce' })
    await expectOptionMisuse(() => guardMcpServer(buildMcpServer(log), { verifier, serverId: 'other' }), { path: 'serverId' })
    expect(() => guardMcpServer(buildMcpServer(log), { verifier, tools: [{ name: 'x', operation: 'delete' } as never] })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
  })

  it('validates its options', async () => {
    const verifier = createVerifier({ id: SERVER_ID, issuers: [authority.trustedIssuer()], mode: 'enforce' })
    const g = (o: unknown) => () => guardMcpServer(buildMcpServer(log), o as never)
    await expectOptionMisuse(g({ verifier: { id: SERVER_ID } }), { path: 'verifier' })
    await expectOptionMisuse(g({ issuers: [authority.trustedIssuer()] }), { path: 'serverId' })
    await expectOptionMisuse(g({ verifier, peerIdentity: 'mtls' }), { path: 'peerIdentity' })
    await expectOptionMisuse(g({ verifier, store: {} }), { path: 'store' })
    await expectOptionMisuse(g({ verifier, acceptheader: false }), { path: 'acceptheader' })
    await expectOptionMisuse(g({ verifier, [HOSTILE_KEY]: 1 }), { path: HOSTILE_KEY_PATH })
  })

  it('takes a ready verifier and explicit tool declarations', async () => {
    const verifier = createVerifier({ id: SERVER_ID, issuers: [authority.trustedIssuer()], store, audit, mode: 'enforce' })
    const client = await connect(
      guardMcpServer(buildMcpServer(log), { verifier, tools: [{ name: 'echo', operation: 'read', scope: 'echo:{message}' }] }),
    )
    const token = await authority
      .mint({ subject: 'agent-summarizer-v2', audience: SERVER_ID, scope: ['echo:hi'], operation: 'read', context: CONTEXT })
      .catch((e: unknown) => e)
    // The summarizer has no grant for echo:hi: the authority refuses; the operator can.
    expect(token).toMatchObject({ code: 'ERR_SCOPE_DENIED' })
    await expect(call(client, await mintRead(), { message: 'hi' }, 'echo')).rejects.toMatchObject(denied('ERR_SCOPE_DENIED'))
  })

  it("passes the peerIdentity hook's peer to the verifier (a token presented by someone else is refused)", async () => {
    const client = await connect(guard(buildMcpServer(log), { peerIdentity: () => ({ agentId: 'agent-operator' }) }))
    await expect(call(client, await mintRead())).rejects.toMatchObject(denied('ERR_TOKEN_BINDING'))
    const failing = await connect(guard(buildMcpServer(log), { peerIdentity: () => Promise.reject(new Error('tls state unavailable')) }))
    await expect(call(failing, await mintRead())).rejects.toMatchObject(denied('ERR_GENERIC'))
    expect(log.calls).toHaveLength(0)
  })
})

describe('initialize: what an unauthenticated peer learns', () => {
  it("drops the server's instructions from initialize unless configured", async () => {
    const { McpServer: Mcp } = await import('@modelcontextprotocol/sdk/server/mcp.js')
    const build = () => {
      const s = new Mcp({ name: SERVER_ID, version: '1.0.0' }, { instructions: 'internal: the admin tool is purge_all' })
      registerDbTools(s, log)
      return s
    }
    const anonymous = await connect(guard(build()))
    expect(anonymous.getInstructions()).toBeUndefined()
    const configured = await connect(guard(build(), { initializeInstructions: true }))
    expect(configured.getInstructions()).toBe('internal: the admin tool is purge_all')
  })
})
