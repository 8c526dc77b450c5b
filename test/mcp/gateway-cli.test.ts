/**
 * The `agent-trust-mcp-gateway` command, end to end: the operator prints the upstream's
 * hashes, pins one tool in the manifest, starts the gateway over stdio in front of
 * @modelcontextprotocol/server-everything, and agents call it with the SDK's Client.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, type ManifestInput, type ToolDeclaration } from 'agent-trust'
import { CAPABILITY_DENIED, withCapabilities } from 'agent-trust/mcp'
import { CONTEXT, textOf } from '../fixtures/mcp-world.js'

const CLI = fileURLToPath(new URL('../../adapters/mcp/gateway-cli.ts', import.meta.url))
const EVERYTHING = join(dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/server-everything/package.json')), 'dist', 'index.js')
const NODE_ARGS = ['--import', 'tsx', '--conditions=agent-trust-source', CLI]
const dir = mkdtempSync(join(tmpdir(), 'agent-trust-mcp-gw-'))
const manifestPath = join(dir, 'manifest.json')
const jwksPath = join(dir, 'jwks.json')
const clients: Client[] = []

const manifestWith = (tools: ToolDeclaration[]): ManifestInput => ({
  agents: [
    { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['mcp:*:tools/list', 'tool:everything:echo'] },
    { id: 'everything', trustLevel: 'L2', tools },
  ],
})

let authority: Authority

beforeAll(async () => {
  writeFileSync(manifestPath, JSON.stringify(manifestWith([])))
  // 1. The operator reviews what the upstream offers.
  const { stdout } = await promisify(execFile)(process.execPath, [...NODE_ARGS, '--manifest', manifestPath, '--server-id', 'everything', '--print-hashes', '--', process.execPath, EVERYTHING, 'stdio'], {
    env: getDefaultEnvironment(),
    timeout: 30_000,
  })
  const review = JSON.parse(stdout) as { tools: ToolDeclaration[]; status: Array<{ name: string; state: string }> }
  expect(review.status.every((s) => s.state === 'unpinned')).toBe(true)
  // 2. ...and approves only `echo` (read-only).
  const echo = review.tools.find((t) => t.name === 'echo') as ToolDeclaration
  expect(echo.definitionHash).toMatch(/^[A-Za-z0-9_-]{43}$/)
  const manifest = manifestWith([{ ...echo, operation: 'read' }])
  writeFileSync(manifestPath, JSON.stringify(manifest))
  authority = await Authority.create({ manifest })
  writeFileSync(jwksPath, JSON.stringify(authority.jwks()))
}, 60_000)

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()))
  rmSync(dir, { recursive: true, force: true })
})

function gatewayTransport(): StdioClientTransport {
  return new StdioClientTransport({
    command: process.execPath,
    args: [...NODE_ARGS, '--manifest', manifestPath, '--server-id', 'everything', '--jwks', jwksPath, '--', process.execPath, EVERYTHING, 'stdio'],
    env: getDefaultEnvironment(),
    stderr: 'ignore',
  })
}

describe('agent-trust-mcp-gateway (stdio) in front of server-everything', () => {
  it('serves only the approved tool to a token holder; a caller without a token is denied', async () => {
    const agent = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), { issuer: authority, agentId: 'agent-summarizer-v2', serverId: 'everything', context: CONTEXT })
    const raw = new Client({ name: 'raw', version: '1.0.0' })
    clients.push(agent, raw)
    await Promise.all([agent.connect(gatewayTransport()), raw.connect(gatewayTransport())])
    expect((await agent.listTools()).tools.map((t) => t.name)).toEqual(['echo'])
    expect(textOf(await agent.callTool({ name: 'echo', arguments: { message: 'hello' } }))).toBe('Echo: hello')
    await expect(agent.callTool({ name: 'get-env', arguments: {} })).rejects.toMatchObject({ code: 'ERR_SCOPE_DENIED' })
    await expect(raw.callTool({ name: 'echo', arguments: { message: 'hello' } })).rejects.toMatchObject({ code: CAPABILITY_DENIED, data: { code: 'ERR_TOKEN_MISSING' } })
    await expect(raw.callTool({ name: 'get-env', arguments: {} })).rejects.toMatchObject({ code: CAPABILITY_DENIED, data: { code: 'ERR_TOOL_UNDECLARED' } })
  })
})
