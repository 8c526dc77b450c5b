/**
 * The MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios, every
 * suite: active and pending) against the conformance server (test/support/conformance-server-*.ts)
 * on Streamable HTTP over loopback, bare and guarded, on SDK 1.x and 2.x, and through the
 * `agent-trust-mcp-gateway` program.
 *
 * - Audit mode (decide and record, never refuse) must be protocol-transparent: every check
 *   has the same outcome bare and guarded, on each SDK major.
 * - Enforce mode, with the suite's client that carries no capability, passes exactly the
 *   scenarios that need no token (`initialize`, `ping`, the HTTP-level checks).
 * - The gateway serves tools only (pinned definitions, no resources, prompts, logging or
 *   completion, no server-to-client requests); its pass set is pinned here too.
 *
 * Any difference exits 1. Run on Node 22 (the suite needs it):
 *
 *   npx -y node@22 node_modules/tsx/dist/cli.mjs --conditions=agent-trust-source scripts/conformance.ts [--keep <dir>]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Authority, createVerifier, MemoryAuditLog, type EnforcementMode, type ManifestInput, type Verifier } from 'agent-trust'
import { guardMcpServer, serveStreamableHttp, toolDefinitionHash, type StreamableHttpServer } from 'agent-trust/mcp'
import { conformanceServerV1 } from '../test/support/conformance-server-v1.js'
import { conformanceServerV2 } from '../test/support/conformance-server-v2.js'
import {
  differences,
  figures,
  listDifferences,
  passedScenarios,
  readResults,
  type Figures,
  type SuiteResult,
} from './conformance-report.js'

const { values } = parseArgs({ options: { keep: { type: 'string' } } })
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SUITE = join(ROOT, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js')
const GATEWAY_CLI = join(ROOT, 'adapters', 'mcp', 'gateway-cli.ts')
const SERVER_ID = 'conformance-server'
const GATEWAY_ID = 'conformance-gateway'
const SUITE_VERSION = (createRequire(import.meta.url)('@modelcontextprotocol/conformance/package.json') as { version: string }).version

/**
 * What enforce mode lets through without a token: `initialize` and `ping` need none, and the
 * DNS-rebinding check is the host's; every other scenario sends a guarded method.
 */
const ENFORCE_PASSES = ['dns-rebinding-protection', 'ping', 'server-initialize']
/**
 * Through the gateway (audit mode): it serves the upstream's tools and nothing else (no
 * resources, prompts, logging or completion), relays neither the upstream's notifications
 * (progress, log messages) nor its requests to the client (sampling, elicitation): what
 * passes is every scenario answered by a tool result alone.
 */
const GATEWAY_PASSES = [
  'dns-rebinding-protection',
  'json-schema-2020-12',
  'ping',
  'server-initialize',
  'server-sse-multiple-streams',
  'server-sse-polling',
  'tools-call-audio',
  'tools-call-embedded-resource',
  'tools-call-error',
  'tools-call-image',
  'tools-call-mixed-content',
  'tools-call-simple-text',
  'tools-list',
]

const work = values.keep ?? mkdtempSync(join(tmpdir(), 'agent-trust-conformance-'))
mkdirSync(work, { recursive: true, mode: 0o700 })
const started = Date.now()
const closers: Array<() => Promise<unknown>> = []
const failures: string[] = []

function say(line: string): void {
  process.stdout.write(`${line}\n`)
}

interface Run {
  readonly all: SuiteResult
  readonly active: SuiteResult
}

/** The active suite's scenarios, learnt from the first run (the suite has no machine-readable listing). */
let activeScenarios: ReadonlySet<string> | undefined

function runCli(name: string, url: URL, suite: string, out: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [SUITE, 'server', '--url', url.href, '--suite', suite, '-o', out], {
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000)
    child.once('error', reject)
    child.once('exit', (code) => {
      clearTimeout(timer)
      // The suite exits 1 when a check fails; the verdict here is the comparison, so only a crash stops.
      if (code === 0 || code === 1) resolve()
      else reject(new Error(`conformance suite (${name}, ${suite}) exited with ${code}`))
    })
  })
}

/** Every server scenario (active and pending suites) against `url`; results under <work>/<name>. */
async function runSuite(name: string, url: URL): Promise<Run> {
  const t0 = Date.now()
  try {
    return await runSuites(name, url)
  } finally {
    say(`  ran ${name} in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  }
}

async function runSuites(name: string, url: URL): Promise<Run> {
  if (activeScenarios === undefined) {
    // The first run: the active suite, then the pending one, to learn which is which.
    await runCli(name, url, 'active', join(work, name, 'active'))
    await runCli(name, url, 'pending', join(work, name, 'pending'))
    const active = readResults(join(work, name, 'active'))
    const pending = readResults(join(work, name, 'pending'))
    for (const scenario of pending.keys()) if (active.has(scenario)) throw new Error(`scenario ${scenario} is in both suites`)
    activeScenarios = new Set(active.keys())
    return { active, all: new Map([...active, ...pending]) }
  }
  await runCli(name, url, 'all', join(work, name))
  const all = readResults(join(work, name))
  const names = activeScenarios
  return { all, active: new Map([...all].filter(([scenario]) => names.has(scenario))) }
}

function describe(f: Figures): string {
  return `${f.checksPassed}/${f.checks} checks, ${f.scenariosPassed}/${f.scenarios} scenarios${f.warnings > 0 ? ` (${f.warnings} warnings)` : ''}`
}

async function serve(build: () => ReturnType<Parameters<typeof serveStreamableHttp>[0]>): Promise<StreamableHttpServer> {
  const http = await serveStreamableHttp(build)
  closers.push(() => http.close())
  return http
}

/** One verifier per configuration, shared by its sessions (as serveStreamableHttp asks); its log shows the guard was in the path. */
function verifierFor(mode: EnforcementMode, issuer: ReturnType<Authority['trustedIssuer']>): { verifier: Verifier; audit: MemoryAuditLog } {
  const audit = new MemoryAuditLog()
  return { verifier: createVerifier({ id: SERVER_ID, issuers: [issuer], mode, audit }), audit }
}

/** The gateway program's settings and audit file for one mode. */
const gatewayDir = (mode: EnforcementMode): string => join(work, `gateway-${mode}-config`)

async function startGateway(mode: EnforcementMode, upstream: StreamableHttpServer, authority: Authority): Promise<URL> {
  // The operator's review, done here by hashing what the upstream serves: every tool approved.
  const client = new Client({ name: 'conformance-review', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(upstream.url))
  const { tools } = await client.listTools()
  await client.close()
  const manifest: ManifestInput = {
    authority: { id: 'agent-trust-authority' },
    agents: [
      {
        id: GATEWAY_ID,
        trustLevel: 'L2',
        tools: tools.map((t) => ({
          name: t.name,
          operation: 'read' as const,
          definitionHash: toolDefinitionHash({ name: t.name, description: t.description, inputSchema: t.inputSchema }),
        })),
      },
    ],
  }
  const dir = gatewayDir(mode)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest), { mode: 0o600 })
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(authority.jwks()), { mode: 0o600 })
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--conditions=agent-trust-source',
      GATEWAY_CLI,
      '--manifest',
      join(dir, 'manifest.json'),
      '--server-id',
      GATEWAY_ID,
      '--jwks',
      join(dir, 'jwks.json'),
      '--mode',
      mode,
      '--crypto-offload',
      'off',
      '--audit-file',
      join(dir, 'audit.jsonl'),
      '--listen',
      'http://127.0.0.1:0/mcp',
      '--upstream-url',
      upstream.url.href,
    ],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  )
  closers.push(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('exit', resolve))
    }
  })
  return await new Promise<URL>((resolve, reject) => {
    let stderr = ''
    const timer = setTimeout(() => reject(new Error(`the gateway did not start:\n${stderr}`)), 30_000)
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk
      const m = / at (http:\/\/\S+) \(mode /.exec(stderr)
      if (m !== null) {
        clearTimeout(timer)
        resolve(new URL(m[1] as string))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the gateway exited with ${code}:\n${stderr}`))
    })
  })
}

function expectSame(name: string, bare: SuiteResult, guarded: SuiteResult): void {
  const diff = differences(bare, guarded)
  if (diff.length > 0) failures.push(`${name} differs from bare:\n    ${diff.join('\n    ')}`)
}

function expectPasses(name: string, r: SuiteResult, expected: readonly string[]): void {
  const diff = listDifferences([...expected].sort(), passedScenarios(r))
  if (diff.length > 0) failures.push(`${name}: the scenarios passed differ from the expected set (${diff.join(' ')})`)
}

function expectDecisions(name: string, events: ReadonlyArray<{ decision?: unknown; enforced?: unknown }>, mode: EnforcementMode): void {
  // Audit mode records would-be denials (enforced: false); enforce mode records enforced ones.
  const denials = events.filter((e) => e.decision === 'deny' && e.enforced === (mode === 'enforce'))
  if (denials.length === 0) failures.push(`${name}: the guard recorded no ${mode} decision (was it in the path?)`)
}

try {
  const authority = await Authority.create({ manifest: { authority: { id: 'agent-trust-authority' }, agents: [] } })
  closers.push(async () => authority.close())
  const issuer = authority.trustedIssuer()
  say(`MCP conformance suite ${SUITE_VERSION}, server scenarios (results in ${work})`)
  const runs = new Map<string, Run>()

  const sdks = [
    ['sdk1', () => conformanceServerV1()],
    ['sdk2', () => conformanceServerV2()],
  ] as const
  let v1Bare: StreamableHttpServer | undefined
  for (const [sdk, build] of sdks) {
    const bare = await serve(build)
    v1Bare ??= bare
    runs.set(`${sdk} bare`, await runSuite(`${sdk}-bare`, bare.url))
    for (const mode of ['audit', 'enforce'] as const) {
      const { verifier, audit } = verifierFor(mode, issuer)
      const http = await serve(() => guardMcpServer(build(), { verifier }))
      runs.set(`${sdk} ${mode}`, await runSuite(`${sdk}-${mode}`, http.url))
      expectDecisions(`${sdk} ${mode}`, audit.events, mode)
    }
  }
  for (const mode of ['audit', 'enforce'] as const) {
    runs.set(`gateway ${mode}`, await runSuite(`gateway-${mode}`, await startGateway(mode, v1Bare as StreamableHttpServer, authority)))
    const lines = readFileSync(join(gatewayDir(mode), 'audit.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
    expectDecisions(
      `gateway ${mode}`,
      lines.map((l) => JSON.parse(l) as { decision?: unknown; enforced?: unknown }),
      mode,
    )
  }

  say(`  ${'configuration'.padEnd(16)} ${'active suite'.padEnd(36)} all suites`)
  for (const [name, r] of runs) say(`  ${name.padEnd(16)} ${describe(figures(r.active)).padEnd(36)} ${describe(figures(r.all))}`)
  for (const name of ['sdk1 enforce', 'gateway audit']) say(`  ${name} passes: ${passedScenarios((runs.get(name) as Run).all).join(' ')}`)

  const all = (name: string): SuiteResult => (runs.get(name) as Run).all
  expectSame('sdk1 audit', all('sdk1 bare'), all('sdk1 audit'))
  expectSame('sdk2 audit', all('sdk2 bare'), all('sdk2 audit'))
  // The conformance server answers the same on both majors.
  expectSame('sdk2 bare (against sdk1 bare)', all('sdk1 bare'), all('sdk2 bare'))
  // Bare, the conformance server passes every scenario the suite ran.
  for (const name of ['sdk1 bare', 'sdk2 bare']) expectPasses(name, all(name), [...all(name).keys()])
  expectPasses('sdk1 enforce', all('sdk1 enforce'), ENFORCE_PASSES)
  expectPasses('sdk2 enforce', all('sdk2 enforce'), ENFORCE_PASSES)
  expectPasses('gateway audit', all('gateway audit'), GATEWAY_PASSES)
  expectPasses('gateway enforce', all('gateway enforce'), ENFORCE_PASSES)
} catch (e) {
  failures.push(`the run failed: ${(e as Error).stack ?? String(e)}`)
} finally {
  for (const close of closers.reverse()) await close().catch(() => undefined)
  if (values.keep === undefined) rmSync(work, { recursive: true, force: true })
}

say(`conformance: ${failures.length === 0 ? 'ok' : `${failures.length} failed`} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
for (const f of failures) process.stderr.write(`conformance: ${f}\n`)
process.exit(failures.length === 0 ? 0 : 1)
