/**
 * Identity across processes: the authority, the orchestrator, the summarizer and
 * the database reader run as four separate processes on loopback and talk over mutual TLS
 * only. Each agent generates its own key and enrolls with a single-use join token; tokens
 * are bound to the certificate of the agent they were minted for, so a token stolen from
 * the summarizer is useless to anyone else.
 *
 * Prerequisites: `npm install` (nothing else: no Redis, no openssl).
 * Run alone: `npx tsx --conditions=agent-trust-source examples/identity-scenario.ts`
 */
import { Agent } from 'undici'
import { CertificateAuthority, mtlsClientOptions } from 'agent-trust/identity'
import { Child } from './identity-ipc.js'
import { attempt, describeTally, tallied, type Print } from './print.js'
import { SUMMARIZER } from './seed-manifest.js'

interface Ready {
  type: 'ready'
  url: string
  enrollUrl: string
  ca: string
  authorityId: string
  trustDomain: string
}

function started(child: Child): Promise<Ready> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Ready) => {
      if (m?.type !== 'ready') return
      cleanup()
      resolve(m)
    }
    const onExit = () => {
      cleanup()
      reject(new Error(`${child.name} exited during start`))
    }
    const cleanup = () => {
      child.process.off('message', onMessage)
      child.process.off('exit', onExit)
    }
    child.process.on('message', onMessage)
    child.process.on('exit', onExit)
  })
}

/** Turn a child's result into an attempt: resolves on success, rejects with the child's code. */
function outcome(r: { ok: boolean; code?: string }): void {
  if (!r.ok) throw Object.assign(new Error('denied'), { code: r.code })
}

/** A request from this launcher process to the database reader, with the given TLS credentials. */
async function probe(url: string, connect: object): Promise<void> {
  const dispatcher = new Agent({ connect })
  try {
    await dispatcher.request({
      origin: url,
      path: '/tools/read_documents',
      method: 'POST',
      body: '{"namespace":"user-123"}',
      signal: AbortSignal.timeout(5000),
    })
  } catch {
    throw Object.assign(new Error('refused'), { code: 'ERR_PEER_UNAUTHENTICATED' })
  } finally {
    await dispatcher.close()
  }
}

export async function runIdentityScenario(out: Print): Promise<void> {
  const { print, tally } = tallied(out)
  const children: Child[] = []
  const spawnChild = (name: string, file: string, args: string[] = []) => {
    const c = new Child(name, file, args)
    children.push(c)
    return c
  }
  try {
    const authority = spawnChild('authority', './identity-authority-process.ts')
    const reader = spawnChild('agent-database-reader', './identity-agent-process.ts', ['database-reader'])
    const orchestrator = spawnChild('moltbot-orchestrator', './identity-agent-process.ts', ['orchestrator'])
    const [a] = await Promise.all([started(authority), started(reader), started(orchestrator)])
    print(`Authority process ${authority.process.pid}: ${a.url} (CA of spiffe://${a.trustDomain}; enrollment at ${a.enrollUrl})`)
    const base = { url: a.url, enrollUrl: a.enrollUrl, ca: a.ca, authorityId: a.authorityId, trustDomain: a.trustDomain }
    const join = (agentId: string) => authority.value<string>('enrollment-token', { agentId })

    // Each agent makes its key where it runs; only a CSR and a single-use join token travel.
    const [r, o] = await Promise.all([
      join('agent-database-reader').then((joinToken) => reader.value<{ spiffeId: string; url: string }>('init', { ...base, joinToken })),
      join('moltbot-orchestrator').then((joinToken) => orchestrator.value<{ spiffeId: string }>('init', { ...base, joinToken })),
    ])
    print(`Database reader process ${reader.process.pid}: ${r.url} as ${r.spiffeId}`)
    print(`Orchestrator process ${orchestrator.process.pid}: ${o.spiffeId}`)

    print('The orchestrator spawns the summarizer through the authority (over mTLS):')
    await attempt(print, 'moltbot-orchestrator spawns agent-summarizer-v2 (L2, one namespace)', async () =>
      outcome(await orchestrator.call('spawn')),
    )
    const summarizer = spawnChild('agent-summarizer-v2', './identity-agent-process.ts', ['summarizer'])
    await started(summarizer)
    const s = await summarizer.value<{ spiffeId: string; notAfter: string }>('init', { ...base, joinToken: await join(SUMMARIZER.id) })
    print(`Summarizer process ${summarizer.process.pid}: ${s.spiffeId} (certificate until ${s.notAfter})`)

    const target = r.url
    print('Calls between processes, each on its own mTLS connection:')
    await attempt(print, 'summarizer reads user-123 with a token bound to its certificate', async () =>
      outcome(await summarizer.call('read', { target, namespace: 'user-123' })),
    )
    const stolen = await summarizer.value<string>('leak', { namespace: 'user-123' })
    await attempt(print, 'orchestrator presents the token stolen from the summarizer', async () =>
      outcome(await orchestrator.call('present', { target, namespace: 'user-123', token: stolen })),
    )
    await attempt(print, 'orchestrator reads user-999 with its own token', async () =>
      outcome(await orchestrator.call('read', { target, namespace: 'user-999' })),
    )
    await attempt(print, 'summarizer reads user-999 (outside its grant)', async () =>
      outcome(await summarizer.call('read', { target, namespace: 'user-999' })),
    )

    print('Processes without a valid certificate never get a request through:')
    const expect = { trustDomain: a.trustDomain, server: { kind: 'agent' as const, id: 'agent-database-reader' } }
    await attempt(print, 'a process with no certificate calls the database reader', () =>
      probe(target, mtlsClientOptions({ ca: a.ca }, expect)),
    )
    const rogue = await CertificateAuthority.create({ trustDomain: a.trustDomain })
    const forged = await rogue.issueLocal({ kind: 'agent', id: 'moltbot-orchestrator' })
    await attempt(print, 'a process with an "orchestrator" certificate from another CA', () =>
      probe(target, mtlsClientOptions({ cert: forged.cert, key: forged.key, ca: a.ca }, expect)),
    )

    print('An operator revokes the summarizer (its tokens and its certificate):')
    const kept = await summarizer.value<string>('leak', { namespace: 'user-123' })
    const cert = await summarizer.value<string>('certificate')
    await attempt(print, 'operator revokes agent-summarizer-v2', async () =>
      outcome(await authority.call('revoke', { agentId: SUMMARIZER.id })),
    )
    const learned = await reader.value<{ afterMs: number; boundMs: number }>('await-revoked', { certificate: cert })
    print(`  (the database reader learned it from the authority's feed after ${learned.afterMs} ms; bound ${learned.boundMs} ms)`)
    await attempt(print, 'summarizer presents a token minted before the revocation', async () =>
      outcome(await summarizer.call('present', { target, namespace: 'user-123', token: kept })),
    )
    await attempt(print, 'summarizer asks the authority for a new token', async () =>
      outcome(await summarizer.call('mint', { namespace: 'user-123' })),
    )
    const audit = await authority.value<{ events: number; denied: number }>('audit')
    print(
      `${describeTally(tally)} above; the authority process audited its own ${audit.events} decisions (${audit.denied} denied), the database reader and the TLS handshake the rest.`,
    )
  } finally {
    await Promise.allSettled(children.map((c) => c.stop()))
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runIdentityScenario((line) => console.log(line))
}
