/**
 * A guarded server in a child process over stdio, called by the SDK's Client. The
 * authority stays in the test process; the child gets only the public JWKS.
 */
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority } from 'agent-trust'
import { CAPABILITY_DENIED, withCapabilities } from 'agent-trust/mcp'
import { CONTEXT, MANIFEST, META_KEY, SERVER_ID, textOf } from '../../support/mcp-world.js'

const FIXTURE = fileURLToPath(new URL('../../support/mcp-stdio-server.ts', import.meta.url))
let authority: Authority
let raw: Client
let wrapped: Client

function transport(): StdioClientTransport {
  const config = { guard: 'agent-trust', serverId: SERVER_ID, issuer: authority.id, jwks: authority.jwks(), manifest: MANIFEST }
  return new StdioClientTransport({
    command: process.execPath,
    args: ['--import', 'tsx', '--conditions=agent-trust-source', FIXTURE],
    env: { ...getDefaultEnvironment(), AGENT_TRUST_MCP_FIXTURE: JSON.stringify(config) },
    stderr: 'pipe',
  })
}

beforeAll(async () => {
  authority = await Authority.create({ manifest: MANIFEST })
  raw = new Client({ name: 'raw', version: '1.0.0' })
  wrapped = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
    issuer: authority,
    agentId: 'agent-summarizer-v2',
    serverId: SERVER_ID,
    context: CONTEXT,
  })
  await Promise.all([raw.connect(transport()), wrapped.connect(transport())])
}, 60_000)

afterAll(async () => {
  await Promise.allSettled([raw.close(), wrapped.close()])
})

const denied = (code: string) => ({ code: CAPABILITY_DENIED, data: { code } })
const read = (token: string | undefined, namespace = 'user-123', name = 'read_documents') =>
  raw.callTool({ name, arguments: { namespace }, ...(token === undefined ? {} : { _meta: { [META_KEY]: token } }) })
const mint = (over: Partial<Parameters<Authority['mint']>[0]> = {}) =>
  authority.mint({
    subject: 'agent-summarizer-v2',
    audience: SERVER_ID,
    scope: ['db:read:documents:namespace:user-123'],
    operation: 'read',
    context: CONTEXT,
    ...over,
  })

describe('guarded server over stdio (child process)', () => {
  it('the wrapped client lists and calls', async () => {
    expect((await wrapped.listTools()).tools.map((t) => t.name).sort()).toEqual(['echo', 'read_documents'])
    expect(JSON.parse(textOf(await wrapped.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })))).toEqual([
      'q3-report.txt',
      'notes.md',
    ])
  })

  it('attacks: no token, another server, another tool, other arguments, replay, L1 execute', async () => {
    await expect(read(undefined)).rejects.toMatchObject(denied('ERR_TOKEN_MISSING'))
    await expect(
      read(await mint({ audience: 'agent-other-server', scope: ['tool:agent-other-server:echo'], operation: 'execute' })),
    ).rejects.toMatchObject(denied('ERR_TOKEN_AUDIENCE'))
    await expect(read(await mint(), 'user-123', 'purge_namespace')).rejects.toMatchObject(denied('ERR_SCOPE_DENIED'))
    await expect(read(await mint(), 'user-456')).rejects.toMatchObject(denied('ERR_SCOPE_DENIED'))
    const once = await mint()
    await read(once)
    await expect(read(once)).rejects.toMatchObject(denied('ERR_TOKEN_REPLAYED'))
    const l1 = await mint({ subject: 'agent-status-reader', scope: ['db:admin:purge:namespace:user-123'] })
    await expect(read(l1, 'user-123', 'purge_namespace')).rejects.toMatchObject(denied('ERR_TRUST_LEVEL'))
  })

  it('attack: a token signed by another authority (unknown key)', async () => {
    const rogue = await Authority.create({ manifest: MANIFEST })
    const token = await rogue.mint({
      subject: 'agent-summarizer-v2',
      audience: SERVER_ID,
      scope: ['db:read:documents:namespace:user-123'],
      operation: 'read',
      context: CONTEXT,
    })
    await expect(read(token)).rejects.toMatchObject(denied('ERR_TOKEN_KEY_UNKNOWN'))
  })
})
