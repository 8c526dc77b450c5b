/**
 * An orchestrator spawns a sub-agent through the authority and runs it in a network sandbox
 * built from the child's manifest entry: the summarizer may reach only
 * `http://agent-database-reader:8080 internal` (itself in a sandbox); everything else is
 * dropped in the kernel or refused by the sandbox's proxy, and every decision is audited.
 * Prerequisites: Linux, root (or CAP_NET_ADMIN), `ip`, `nft` and `setpriv`. Without root it
 * says so and exits 0.
 */
import { Authority, MemoryAuditLog, parseManifest, type Manifest } from 'agent-trust'
import { hasNetAdmin, startSandbox, type Sandbox } from 'agent-trust/sandbox'

if (process.platform !== 'linux' || !hasNetAdmin()) {
  console.log('sandbox-spawn: the network sandbox needs Linux and root (or CAP_NET_ADMIN); run it with sudo. Nothing to do.')
  process.exit(0)
}

const READER = 'http://agent-database-reader:8080 internal'
const manifest = parseManifest({
  authority: { id: 'moltbot-authority' },
  agents: [
    { id: 'moltbot-orchestrator', trustLevel: 'L3', grants: ['db:read:documents:namespace:*'], maxDelegationDepth: 2, egress: [READER] },
    { id: 'agent-database-reader', trustLevel: 'L2', egress: [] },
  ],
})
const audit = new MemoryAuditLog()
const authority = await Authority.create({ manifest, audit })

// 1. The orchestrator spawns the summarizer: one namespace of documents, one destination.
const child = await authority.spawn({
  parent: 'moltbot-orchestrator',
  child: { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'], egress: [READER] },
})
console.log(`spawned ${child.id} (${child.trustLevel}), egress: ${child.egress.join(', ')}`)

// 2. The sandboxes are built from the manifest entries, the spawned child's included.
const running: Manifest = { ...manifest, agents: [...manifest.agents, child] }
const sandboxes: Sandbox[] = []
try {
  const reader = await startSandbox({ agent: 'agent-database-reader', manifest: running, audit })
  sandboxes.push(reader)
  const server = reader.spawn(
    process.execPath,
    ['-e', `require('node:http').createServer((q, s) => s.end('documents of user-123')).listen(8080, () => console.log('up'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise((resolve) => server.stdout?.once('data', resolve))

  const summarizer = await startSandbox({ agent: child.id, manifest: running, audit })
  sandboxes.push(summarizer)
  console.log(`${child.id} runs in ${summarizer.names.netns}; proxy ${summarizer.env.HTTP_PROXY}`)

  // 3. The child's own code: the declared reader works; the exfiltration attempts do not.
  const script = `
const http = require('node:http'), net = require('node:net')
const get = (opts) => new Promise((done) => {
  const r = http.request({ timeout: 1500, ...opts }, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => done(res.statusCode + ' ' + (res.headers['x-agent-trust-rule'] ? 'rule=' + res.headers['x-agent-trust-rule'] : b))) })
  r.on('error', (e) => done('failed: ' + e.code)); r.on('timeout', () => r.destroy(Object.assign(new Error(), { code: 'TIMEOUT' }))); r.end()
})
const proxy = new URL(process.env.HTTP_PROXY)
;(async () => {
  console.log('  GET http://agent-database-reader:8080/  ->', await get({ host: 'agent-database-reader', port: 8080, path: '/' }))
  console.log('  GET http://external-api.com/upload (direct)  ->', await get({ host: 'external-api.com', path: '/upload' }))
  console.log('  GET http://external-api.com/upload (proxy)  ->', await get({ host: proxy.hostname, port: proxy.port, path: 'http://external-api.com/upload' }))
  await new Promise((done) => { const s = net.connect(443, '198.51.100.7'); s.on('connect', () => { console.log('  tcp 198.51.100.7:443  -> connected'); s.destroy(); done() }); s.on('error', (e) => { console.log('  tcp 198.51.100.7:443  -> failed: ' + e.code); done() }); s.setTimeout(1500, () => { console.log('  tcp 198.51.100.7:443  -> dropped (timeout)'); s.destroy(); done() }) })
})()
`
  const run = summarizer.spawn(process.execPath, ['-e', script], { stdio: 'inherit' })
  await new Promise((resolve) => run.once('exit', resolve))
} finally {
  for (const s of sandboxes.reverse()) await s.close()
  authority.close()
}

console.log('audit (proxy decisions):')
for (const e of audit.events.filter((ev) => ev.note?.startsWith('proxy')))
  console.log(`  ${e.decision} ${e.origin} -> ${e.destination ?? '?'} ${e.code ?? ''} ${e.note ?? ''}`)
