/**
 * Certificate revocations across authority-service processes sharing one real Redis: a
 * serial or an identity revoked on replica A is refused by replica B at its peer check (no
 * mint, no renewal), and still refused after both processes are killed and restarted with
 * the same CA, keys and Redis.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAuthorityClient, type AuthorityClient } from 'agent-trust/authority-service'
import { createIdentityRequest, type TlsCredentials } from 'agent-trust/identity'
import { CONTEXT, makeCa, READ_SCOPE, TRUST_DOMAIN } from '../support/identity.js'
import { CI, deleteKeys, randomPrefix, REDIS_URL, sharedRedisUp } from '../support/redis.js'

const WORKER = fileURLToPath(new URL('../support/authority-service-worker.ts', import.meta.url))
const PREFIX = randomPrefix('certrev')
const enabled = CI || (await sharedRedisUp())

interface Replica {
  readonly proc: ChildProcess
  readonly url: string
}

const children: ChildProcess[] = []
const clients: AuthorityClient[] = []

async function start(ca: { certificatePem: string; privateKeyPem: string }): Promise<Replica> {
  const proc = fork(WORKER, [], {
    execArgv: ['--import', 'tsx', '--conditions=agent-trust-source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  children.push(proc)
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('message', (m: { ok: boolean; value?: { url: string }; code?: string }) =>
      m.ok && m.value !== undefined ? resolve(m.value.url) : reject(new Error(m.code)),
    )
    proc.once('exit', () => reject(new Error('the worker exited')))
    proc.send({ id: 0, op: 'init', url: REDIS_URL, prefix: PREFIX, ca })
  })
  return { proc, url }
}

function kill(r: Replica): Promise<void> {
  return new Promise((resolve) => {
    if (r.proc.exitCode !== null) return resolve()
    r.proc.once('exit', () => resolve())
    r.proc.kill('SIGKILL')
  })
}

function client(url: string, tls: TlsCredentials): AuthorityClient {
  const c = createAuthorityClient({ url, tls, timeoutMs: 3000 })
  clients.push(c)
  return c
}

const mintReq = (subject: string) => ({
  subject,
  audience: 'agent-database-reader',
  scope: [READ_SCOPE],
  operation: 'read' as const,
  context: CONTEXT,
})

const csrFor = async (id: string) => (await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id } })).csr

/** A fresh connection is dropped after its handshake or refused at its first request. */
const REFUSED = { code: expect.stringMatching(/^ERR_(PEER_UNAUTHENTICATED|AUTHORITY_UNAVAILABLE)$/) as unknown }

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  if (enabled) await deleteKeys(REDIS_URL, `*${PREFIX}*`)
})

describe.skipIf(!enabled)('certificate revocations shared by authority-service processes (real Redis)', () => {
  let exported: { certificatePem: string; privateKeyPem: string }
  let ca: Awaited<ReturnType<typeof makeCa>>
  let a: Replica
  let b: Replica
  let alice: TlsCredentials

  beforeAll(async () => {
    ca = await makeCa()
    exported = await ca.export()
    a = await start(exported)
    b = await start(exported)
    alice = await ca.issueLocal({ kind: 'operator', id: 'alice' })
  }, 60_000)

  it('certificate revoked on A fails on B and after restarting both; identity revocation likewise', async () => {
    const leaked = await ca.issueLocal({ kind: 'agent', id: 'agent-orchestrator' })
    const other = await ca.issueLocal({ kind: 'agent', id: 'agent-orchestrator' })
    const summarizer = await ca.issueLocal({ kind: 'agent', id: 'agent-summarizer-v2' })
    // Connections opened before the revocations, kept alive: the per-request check must refuse them.
    const leakedOnB = client(b.url, leaked)
    const summarizerOnB = client(b.url, summarizer)
    await expect(leakedOnB.mint(mintReq('agent-orchestrator'))).resolves.toBeTypeOf('string')
    await expect(summarizerOnB.mint(mintReq('agent-summarizer-v2'))).resolves.toBeTypeOf('string')

    await client(a.url, alice).revokeCertificate(leaked.issued.serialNumber)
    await client(a.url, alice).revokeAgent('agent-summarizer-v2')

    // B never handled either revocation.
    await expect(leakedOnB.mint(mintReq('agent-orchestrator'))).rejects.toMatchObject({
      code: 'ERR_PEER_UNAUTHENTICATED',
      details: { rule: 'revoked' },
    })
    await expect(leakedOnB.renewCertificate(await csrFor('agent-orchestrator'))).rejects.toMatchObject({
      code: 'ERR_PEER_UNAUTHENTICATED',
    })
    await expect(summarizerOnB.mint(mintReq('agent-summarizer-v2'))).rejects.toMatchObject({
      code: 'ERR_PEER_UNAUTHENTICATED',
      details: { rule: 'revoked' },
    })
    await expect(summarizerOnB.renewCertificate(await csrFor('agent-summarizer-v2'))).rejects.toMatchObject({
      code: 'ERR_PEER_UNAUTHENTICATED',
    })
    await expect(client(b.url, leaked).renewCertificate(await csrFor('agent-orchestrator'))).rejects.toMatchObject(REFUSED)
    // The serial revocation is one certificate's: the agent's other certificate still works.
    await expect(client(b.url, other).mint(mintReq('agent-orchestrator'))).resolves.toBeTypeOf('string')

    await Promise.all([kill(a), kill(b)])
    a = await start(exported)
    b = await start(exported)
    for (const r of [a, b]) {
      await expect(client(r.url, leaked).mint(mintReq('agent-orchestrator'))).rejects.toMatchObject(REFUSED)
      await expect(client(r.url, leaked).renewCertificate(await csrFor('agent-orchestrator'))).rejects.toMatchObject(REFUSED)
      await expect(client(r.url, summarizer).mint(mintReq('agent-summarizer-v2'))).rejects.toMatchObject(REFUSED)
      await expect(client(r.url, summarizer).renewCertificate(await csrFor('agent-summarizer-v2'))).rejects.toMatchObject(REFUSED)
      await expect(client(r.url, other).mint(mintReq('agent-orchestrator'))).resolves.toBeTypeOf('string')
    }
  }, 60_000)
})
