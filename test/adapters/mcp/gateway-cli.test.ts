/**
 * The `agent-trust-mcp-gateway` command, end to end: the operator prints the upstream's
 * hashes, pins one tool in the manifest, starts the gateway over stdio and over Streamable
 * HTTP in front of @modelcontextprotocol/server-everything, and agents call it with the SDK's Client.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Authority, type ManifestInput, type ToolDeclaration } from 'agent-trust'
import { CAPABILITY_DENIED, withCapabilities } from 'agent-trust/mcp'
import { CONTEXT, textOf } from '../../support/mcp-world.js'

const CLI = fileURLToPath(new URL('../../../adapters/mcp/gateway-cli.ts', import.meta.url))
const EVERYTHING = join(
  dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist',
  'index.js',
)
const NODE_ARGS = ['--import', 'tsx', '--conditions=agent-trust-source', CLI]
const dir = mkdtempSync(join(tmpdir(), 'agent-trust-mcp-gw-'))
const manifestPath = join(dir, 'manifest.json')
const jwksPath = join(dir, 'jwks.json')
const clients: Client[] = []
const children: ChildProcess[] = []

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
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [...NODE_ARGS, '--manifest', manifestPath, '--server-id', 'everything', '--print-hashes', '--', process.execPath, EVERYTHING, 'stdio'],
    {
      env: getDefaultEnvironment(),
      timeout: 30_000,
    },
  )
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
  for (const child of children) child.kill()
  rmSync(dir, { recursive: true, force: true })
})

function gatewayTransport(): StdioClientTransport {
  return new StdioClientTransport({
    command: process.execPath,
    args: [
      ...NODE_ARGS,
      '--manifest',
      manifestPath,
      '--server-id',
      'everything',
      '--jwks',
      jwksPath,
      '--',
      process.execPath,
      EVERYTHING,
      'stdio',
    ],
    env: getDefaultEnvironment(),
    stderr: 'ignore',
  })
}

describe('agent-trust-mcp-gateway (stdio) in front of server-everything', () => {
  it('serves only the approved tool to a token holder; a caller without a token is denied', async () => {
    const agent = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
      issuer: authority,
      agentId: 'agent-summarizer-v2',
      serverId: 'everything',
      context: CONTEXT,
    })
    const raw = new Client({ name: 'raw', version: '1.0.0' })
    clients.push(agent, raw)
    await Promise.all([agent.connect(gatewayTransport()), raw.connect(gatewayTransport())])
    expect((await agent.listTools()).tools.map((t) => t.name)).toEqual(['echo'])
    expect(textOf(await agent.callTool({ name: 'echo', arguments: { message: 'hello' } }))).toBe('Echo: hello')
    await expect(agent.callTool({ name: 'get-env', arguments: {} })).rejects.toMatchObject({ code: 'ERR_SCOPE_DENIED' })
    await expect(raw.callTool({ name: 'echo', arguments: { message: 'hello' } })).rejects.toMatchObject({
      code: CAPABILITY_DENIED,
      data: { code: 'ERR_TOKEN_MISSING' },
    })
    await expect(raw.callTool({ name: 'get-env', arguments: {} })).rejects.toMatchObject({
      code: CAPABILITY_DENIED,
      data: { code: 'ERR_TOOL_UNDECLARED' },
    })
  })
})

describe('agent-trust-mcp-gateway refuses trust files others can write', () => {
  it('a world-writable --jwks file is refused at start, with a message that says how to fix it', async () => {
    const loose = join(dir, 'loose-jwks.json')
    writeFileSync(loose, JSON.stringify(authority.jwks()))
    chmodSync(loose, 0o666)
    const run = promisify(execFile)(
      process.execPath,
      [...NODE_ARGS, '--manifest', manifestPath, '--server-id', 'everything', '--jwks', loose, '--', process.execPath, EVERYTHING, 'stdio'],
      { env: getDefaultEnvironment(), timeout: 30_000 },
    )
    const err = (await run.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number; stderr?: string }
    expect(err?.code).toBe(2)
    expect(err?.stderr).toMatch(/must not be writable by group or others/)
  }, 60_000)
})

/** Start the gateway listening on loopback HTTP; resolves with its URL and the line it logged. */
async function startHttpGateway(extra: string[]): Promise<{ url: URL; line: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      ...NODE_ARGS,
      '--manifest',
      manifestPath,
      '--server-id',
      'everything',
      '--jwks',
      jwksPath,
      '--listen',
      'http://127.0.0.1:0/mcp',
      ...extra,
      '--',
      process.execPath,
      EVERYTHING,
      'stdio',
    ],
    {
      env: getDefaultEnvironment(),
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  children.push(child)
  let stderr = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not start: ${stderr}`)), 30_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the gateway exited (${code}): ${stderr}`))
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
      const m = /serving "everything" at (\S+) \((.*)\)/.exec(stderr)
      if (m !== null) {
        clearTimeout(timer)
        resolve({ url: new URL(m[1] as string), line: m[2] as string, child })
      }
    })
  })
}

describe('agent-trust-mcp-gateway over Streamable HTTP', () => {
  it('checks signatures on the crypto thread by default when serving HTTP, and enforces the same', async () => {
    const { url, line } = await startHttpGateway([])
    expect(line).toBe('mode enforce, signatures checked on the crypto thread')
    const agent = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
      issuer: authority,
      agentId: 'agent-summarizer-v2',
      serverId: 'everything',
      context: CONTEXT,
    })
    const raw = new Client({ name: 'raw', version: '1.0.0' })
    clients.push(agent, raw)
    await agent.connect(new StreamableHTTPClientTransport(url))
    await raw.connect(new StreamableHTTPClientTransport(url))
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => agent.callTool({ name: 'echo', arguments: { message: `m${i}` } })),
    )
    expect(results.map(textOf)).toEqual(Array.from({ length: 8 }, (_, i) => `Echo: m${i}`))
    // A token signed by a key the gateway does not trust, through the same thread: denied.
    const stranger = await Authority.create({ manifest: manifestWith([]) })
    const forged = await stranger.mint({
      subject: 'agent-summarizer-v2',
      audience: 'everything',
      scope: ['tool:everything:echo'],
      operation: 'read',
      context: CONTEXT,
    })
    await expect(
      raw.callTool({ name: 'echo', arguments: { message: 'x' }, _meta: { 'io.agent-trust/capability': forged } }),
    ).rejects.toMatchObject({ code: CAPABILITY_DENIED, data: { code: 'ERR_TOKEN_KEY_UNKNOWN' } })
    // A token of the trusted authority whose signature was altered: denied by the thread's check.
    const good = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'everything',
      scope: ['tool:everything:echo'],
      operation: 'read',
      context: CONTEXT,
    })
    const sig = Buffer.from(good.slice(good.lastIndexOf('.') + 1), 'base64url')
    sig[7] = (sig[7] as number) ^ 0x20
    const altered = `${good.slice(0, good.lastIndexOf('.') + 1)}${sig.toString('base64url')}`
    await expect(
      raw.callTool({ name: 'echo', arguments: { message: 'x' }, _meta: { 'io.agent-trust/capability': altered } }),
    ).rejects.toMatchObject({ code: CAPABILITY_DENIED, data: { code: 'ERR_TOKEN_SIGNATURE' } })
  })

  it('checks inline when told to, and refuses an unknown --crypto-offload value', async () => {
    const { line } = await startHttpGateway(['--crypto-offload', 'off'])
    expect(line).toBe('mode enforce, signatures checked inline')
    await expect(
      promisify(execFile)(
        process.execPath,
        [
          ...NODE_ARGS,
          '--manifest',
          manifestPath,
          '--server-id',
          'everything',
          '--jwks',
          jwksPath,
          '--crypto-offload',
          'yes',
          '--',
          process.execPath,
          EVERYTHING,
          'stdio',
        ],
        { env: getDefaultEnvironment(), timeout: 30_000 },
      ),
    ).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--crypto-offload must be auto, on or off') })
  })
})
