/**
 * The program of `agent-trust-mcp-gateway` (started by `gateway-cli.ts`): put agent-trust in front of an MCP server you cannot modify.
 *
 *   agent-trust-mcp-gateway --manifest agent-trust.config.json --server-id everything \
 *     --jwks authority-jwks.json [--listen stdio | --listen http://127.0.0.1:8080/mcp] \
 *     [--audit-file audit.jsonl] [--redis-url redis://127.0.0.1:6379] [--crypto-offload auto|on|off] \
 *     ( -- <upstream command> [args...] | --upstream-url http://127.0.0.1:9000/mcp )
 *
 *   --isolate (Linux, root): the stdio upstream runs in a network sandbox built from the
 *     manifest entry of --server-id (agent-trust/sandbox): it reaches only its declared
 *     destinations, and its sandbox's proxy decisions go to --audit-file.
 *
 *   agent-trust-mcp-gateway --manifest ... --server-id everything --print-hashes -- <upstream command>
 *     prints the upstream's tool definitions and hashes (and proposed manifest declarations)
 *     for review, then exits.
 *
 * stdout is the MCP channel when listening on stdio: everything else goes to stderr.
 */
import { parseArgs } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import { loadManifestFile, resolveMode } from 'agent-trust'
import type { AuditLog, JSONWebKeySet, ReplayRevocationStore } from 'agent-trust'
import { readTrustFileSync } from '#internal'
import { McpGateway, serveStreamableHttp, type ToolPinStatus } from 'agent-trust/mcp'

const USAGE = `usage: agent-trust-mcp-gateway --manifest <file> --server-id <id> --jwks <file> [--issuer <id>]
       [--listen stdio|http://127.0.0.1:<port>/<path>] [--mode enforce|audit|off]
       [--audit-file <file>] [--redis-url <url>] [--crypto-offload auto|on|off] [--print-hashes]
       ([--isolate] -- <upstream command> [args...] | --upstream-url <url>)`

function fail(message: string): never {
  process.stderr.write(`agent-trust-mcp-gateway: ${message}\n${USAGE}\n`)
  process.exit(2)
}

function log(line: string): void {
  process.stderr.write(`[agent-trust-mcp-gateway] ${line}\n`)
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        manifest: { type: 'string', default: 'agent-trust.config.json' },
        'server-id': { type: 'string' },
        jwks: { type: 'string' },
        issuer: { type: 'string' },
        listen: { type: 'string', default: 'stdio' },
        mode: { type: 'string' },
        'audit-file': { type: 'string' },
        'redis-url': { type: 'string' },
        'upstream-url': { type: 'string' },
        'crypto-offload': { type: 'string', default: 'auto' },
        'print-hashes': { type: 'boolean', default: false },
        isolate: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    })
  } catch (e) {
    return fail((e as Error).message)
  }
})()

if (values.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}
const serverId = values['server-id'] ?? fail('--server-id is required')
if (positionals.length > 0 === (values['upstream-url'] !== undefined))
  fail('give the upstream either as "-- <command> [args...]" or as --upstream-url')
if (values.isolate && positionals.length === 0) fail('--isolate runs a stdio upstream: give it as "-- <command> [args...]"')
const manifest = loadManifestFile(values.manifest)
const issuer = values.issuer ?? manifest.authority.id
const mode = resolveMode(values.mode)

function readJwks(path: string): JSONWebKeySet {
  let jwks: unknown
  let text: string
  try {
    // It decides whose tokens are accepted: refused when anyone but us can write it (every reload too).
    text = readTrustFileSync(path, 'JWKS file')
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ERR_CONFIG_INVALID') fail((e as Error).message)
    fail(`cannot read a JWKS from "${path}"`)
  }
  try {
    jwks = JSON.parse(text)
  } catch {
    fail(`cannot read a JWKS from "${path}"`)
  }
  if (!Array.isArray((jwks as JSONWebKeySet | undefined)?.keys)) fail(`"${path}" is not a JWKS ({"keys": [...]})`)
  return jwks as JSONWebKeySet
}

let jwks: JSONWebKeySet = { keys: [] }
if (values.jwks !== undefined) {
  const path = values.jwks
  jwks = readJwks(path)
  // Pick up rotated keys: re-read the file every 30 s (a rotated key is published before it signs).
  setInterval(() => {
    try {
      const next: unknown = JSON.parse(readTrustFileSync(path, 'JWKS file'))
      if (Array.isArray((next as JSONWebKeySet | undefined)?.keys)) jwks = next as JSONWebKeySet
    } catch (e) {
      if ((e as { code?: unknown }).code === 'ERR_CONFIG_INVALID') {
        // Someone else can now write the file: trust no key from it until it is fixed.
        jwks = { keys: [] }
        log(`refusing every token: ${(e as Error).message}`)
      }
      // Otherwise (unreadable, half-written): keep the last good set.
    }
  }, 30_000).unref()
} else if (!values['print-hashes']) {
  fail("--jwks (the authority's public keys) is required")
}

// ECDSA on the crypto thread pays off for an HTTP server under load and costs throughput over
// stdio, where the gateway, its client and the upstream already share the cores (README, "Performance").
const offloadSetting = values['crypto-offload']
if (offloadSetting !== 'auto' && offloadSetting !== 'on' && offloadSetting !== 'off') fail('--crypto-offload must be auto, on or off')
const cryptoOffload = offloadSetting === 'on' || (offloadSetting === 'auto' && values.listen !== 'stdio')

let store: ReplayRevocationStore | undefined
if (values['redis-url'] !== undefined) {
  const { createRedisStore } = await import('agent-trust/revocation/redis')
  store = createRedisStore({ url: values['redis-url'] })
}
let audit: (AuditLog & { close?: () => Promise<void> }) | undefined
if (values['audit-file'] !== undefined) {
  const { createAuditLog, fileSink } = await import('agent-trust/audit')
  audit = createAuditLog({ sinks: [fileSink(values['audit-file'])] })
}

// --isolate: the upstream's own manifest entry decides where it may connect.
let sandbox:
  | { env: Readonly<Record<string, string>>; command(c: string, a: string[]): { command: string; args: string[] }; close(): Promise<void> }
  | undefined
if (values.isolate) {
  const { startSandbox } = await import('agent-trust/sandbox')
  try {
    sandbox = await startSandbox({ agent: serverId, manifest, ...(audit === undefined ? {} : { audit }) })
  } catch (e) {
    const code = (e as { code?: unknown }).code
    process.stderr.write(`agent-trust-mcp-gateway: --isolate: ${(e as Error).message}${typeof code === 'string' ? ` [${code}]` : ''}\n`)
    process.exit(code === 'ERR_SANDBOX_UNAVAILABLE' ? 3 : 4)
  }
  log(`upstream "${serverId}" isolated: only its declared destinations are reachable`)
}

const upstream = new Client({ name: `agent-trust-gateway:${serverId}`, version: '1.0.0' })
const stdioUpstream = (): StdioClientTransport => {
  const command = positionals[0] as string
  const args = positionals.slice(1)
  if (sandbox === undefined) return new StdioClientTransport({ command, args, stderr: 'inherit' })
  const inside = sandbox.command(command, args)
  return new StdioClientTransport({ ...inside, env: { ...getDefaultEnvironment(), ...sandbox.env }, stderr: 'inherit' })
}
const upstreamTransport =
  values['upstream-url'] !== undefined
    ? new StreamableHTTPClientTransport(new URL(values['upstream-url']))
    : // The SDK's default environment (PATH, HOME, ...): the gateway's own secrets stay out of the upstream.
      stdioUpstream()
await upstream.connect(upstreamTransport)

const describe = (s: ToolPinStatus): string =>
  s.state === 'changed'
    ? `withheld tool "${s.name}": definition changed (pinned ${s.pinnedHash}, now ${s.currentHash}); review with --print-hashes and approve the new hash in the manifest`
    : s.state === 'unpinned'
      ? `withheld tool "${s.name}": no approved definitionHash (now ${s.currentHash}); review with --print-hashes`
      : `pinned tool "${s.name}" is missing upstream`

const gateway = await McpGateway.create({
  upstream,
  serverId,
  issuers: [{ issuer, jwks: () => jwks }],
  store,
  manifest,
  audit,
  mode,
  cryptoOffload,
  onReport: values['print-hashes'] ? undefined : (s) => log(describe(s)),
})

async function shutdown(code: number): Promise<never> {
  await gateway.close().catch(() => undefined)
  await upstream.close().catch(() => undefined)
  await sandbox?.close().catch(() => undefined)
  await store?.close().catch(() => undefined)
  await audit?.close?.().catch(() => undefined)
  process.exit(code)
}

if (values['print-hashes']) {
  process.stdout.write(`${JSON.stringify({ serverId, tools: gateway.proposedDeclarations(), status: gateway.status() }, null, 2)}\n`)
  await shutdown(0)
}

process.once('SIGINT', () => void shutdown(0))
process.once('SIGTERM', () => void shutdown(0))
upstream.onclose = () => {
  log('the upstream server closed the connection')
  void shutdown(1)
}

if (values.listen === 'stdio') {
  await gateway.createServer().connect(new StdioServerTransport())
  // The client closing our stdin is the end of the session: do not linger with the upstream.
  process.stdin.once('end', () => void shutdown(0))
} else {
  let url: URL
  try {
    url = new URL(values.listen)
  } catch {
    fail('--listen must be "stdio" or an http:// URL')
  }
  if (url.protocol !== 'http:') fail('--listen supports http:// (put TLS in front, or use stdio)')
  const http = await serveStreamableHttp(() => gateway.createServer(), {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 80),
    path: url.pathname,
  })
  log(`serving "${serverId}" at ${http.url.href} (mode ${mode}, signatures checked ${cryptoOffload ? 'on the crypto thread' : 'inline'})`)
}
