/**
 * Signed checkpoints against whoever can write the trail: a re-chained trail (every hash
 * recomputed, a fresh seal), a cut tail with a forged seal, an emptied file and a deleted
 * chain all verify on their own, and all are reported against the latest checkpoint. A
 * checkpoint not signed by the checkpoint key, or a capability token passed off as one, is
 * refused.
 */
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Authority } from 'agent-trust'
import {
  createAuditLog,
  createCheckpointSigner,
  fileSink,
  memorySink,
  readCheckpoints,
  verifyAuditLines,
  verifyAuditTrail,
  verifyCheckpoint,
  withCheckpoints,
} from 'agent-trust/audit'
import { auditDigest, chainCanonical, GENESIS_PREV, lineOf } from '../../src/audit/chain.js'
import { CONTEXT, MANIFEST } from '../support/kernel.js'
import { expectOptionMisuse } from '../support/options.js'

const dir = mkdtempSync(join(tmpdir(), 'agent-trust-checkpoint-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function signer(kid = 'checkpoint-1') {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return createCheckpointSigner({ privateKey, kid })
}

/** Two chains in one file, each with checkpoints in a file of its own (elsewhere, in production). */
async function trail() {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.jsonl`)
  const checkpoints = join(dir, `${Math.random().toString(36).slice(2)}.checkpoints.jsonl`)
  const s = await signer()
  const logs = [0, 1].map(() => withCheckpoints(createAuditLog({ sinks: [fileSink(file)] }), { signer: s, sink: fileSink(checkpoints) }))
  for (let i = 0; i < 20; i++)
    for (const log of logs) log.record({ action: 'mint', decision: 'allow', origin: `agent-${i}`, context: CONTEXT })
  for (const log of logs) await log.close()
  return { file, checkpoints, jwks: s.jwks(), chainIds: logs.map((l) => l.chainId) }
}

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')

/** What an attacker with write access can do without any key: rebuild a chain from its events. */
function rechain(events: Array<Record<string, unknown>>, chainId: string): string[] {
  const digest = auditDigest(undefined)
  let prev = GENESIS_PREV
  return events.map((e, seq) => {
    const { hash: _h, prev: _p, seq: _s, chainId: _c, time, v: _v, ...body } = e
    const { canonical, hash } = chainCanonical(body as never, chainId, seq, prev, String(time), digest)
    prev = hash
    return lineOf(canonical, hash).trimEnd()
  })
}

describe('signed audit checkpoints', () => {
  it('an untouched trail verifies against its checkpoints, and the last one is the sealed head', async () => {
    const t = await trail()
    const anchors = await readCheckpoints(readFileSync(t.checkpoints, 'utf8'), t.jwks)
    expect(anchors).toHaveLength(2)
    expect(anchors.every((a) => a.sealed && a.events === 21)).toBe(true)
    const r = await verifyAuditTrail(t.file, { requireSealed: true, anchors })
    expect(r.ok).toBe(true)
  })

  it('reports a chain re-hashed from scratch with a forged seal, which verifies on its own', async () => {
    const t = await trail()
    const all = lines(t.file).map((l) => JSON.parse(l) as Record<string, unknown>)
    const victim = t.chainIds[0] as string
    const mine = all.filter((e) => e.chainId === victim)
    // Change one decision and re-chain everything after it, seal included.
    ;(mine[3] as Record<string, unknown>).decision = 'deny'
    const forged = rechain(mine, victim)
    const others = all.filter((e) => e.chainId !== victim).map((e) => JSON.stringify(e))
    writeFileSync(t.file, `${[...forged, ...others].join('\n')}\n`)
    expect((await verifyAuditTrail(t.file, { requireSealed: true })).ok).toBe(true)
    const anchors = await readCheckpoints(readFileSync(t.checkpoints, 'utf8'), t.jwks)
    const r = await verifyAuditTrail(t.file, { requireSealed: true, anchors })
    expect(r.ok).toBe(false)
    expect(r.breaks[0]).toMatchObject({ chainId: victim, kind: 'edited' })
  })

  it('reports a cut tail re-sealed, an emptied file and a deleted chain', async () => {
    const t = await trail()
    const anchors = await readCheckpoints(readFileSync(t.checkpoints, 'utf8'), t.jwks)
    const all = lines(t.file).map((l) => JSON.parse(l) as Record<string, unknown>)
    const victim = t.chainIds[1] as string
    // Cut: the first 10 events, then a fresh seal.
    const kept = all.filter((e) => e.chainId === victim).slice(0, 10)
    const seal = { ...(all.filter((e) => e.chainId === victim).at(-1) as Record<string, unknown>) }
    const cut = rechain([...kept, seal], victim)
    const rest = all.filter((e) => e.chainId !== victim).map((e) => JSON.stringify(e))
    writeFileSync(t.file, `${[...rest, ...cut].join('\n')}\n`)
    expect((await verifyAuditTrail(t.file, { requireSealed: true })).ok).toBe(true)
    expect((await verifyAuditTrail(t.file, { requireSealed: true, anchors })).breaks).toContainEqual(
      expect.objectContaining({ chainId: victim, kind: 'truncated' }),
    )
    // Deleted: the whole chain gone.
    writeFileSync(t.file, `${rest.join('\n')}\n`)
    expect((await verifyAuditTrail(t.file, { requireSealed: true })).ok).toBe(true)
    expect((await verifyAuditTrail(t.file, { requireSealed: true, anchors })).breaks).toContainEqual(
      expect.objectContaining({ chainId: victim, kind: 'deleted' }),
    )
    // Emptied: with checkpoints every chain is missing; without, --require-sealed still fails.
    writeFileSync(t.file, '')
    expect((await verifyAuditTrail(t.file, { requireSealed: true, anchors })).breaks).toHaveLength(2)
    expect((await verifyAuditTrail(t.file, { requireSealed: true })).ok).toBe(false)
    expect(verifyAuditLines([], { requireSealed: true }).ok).toBe(false)
    expect(verifyAuditLines([]).ok).toBe(true)
  })

  it('refuses a checkpoint signed by another key, edited, or a capability token passed off as one', async () => {
    const t = await trail()
    const [first] = lines(t.checkpoints).map((l) => (JSON.parse(l) as { checkpoint: string }).checkpoint) as [string]
    const other = await signer()
    await expect(verifyCheckpoint(first, other.jwks())).rejects.toMatchObject({ code: 'ERR_AUDIT_TAMPERED' })
    const [h, p, s] = first.split('.') as [string, string, string]
    const body = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
    const edited = `${h}.${Buffer.from(JSON.stringify({ ...body, seq: 2 })).toString('base64url')}.${s}`
    await expect(verifyCheckpoint(edited, t.jwks)).rejects.toMatchObject({ code: 'ERR_AUDIT_TAMPERED' })
    await expect(
      readCheckpoints(`${lines(t.checkpoints).join('\n')}\n${JSON.stringify({ v: 1, checkpoint: edited })}\n`, t.jwks),
    ).rejects.toMatchObject({
      code: 'ERR_AUDIT_TAMPERED',
    })
    // A token of an authority whose key is the checkpoint key's twin in form: never read as a checkpoint.
    const authority = await Authority.create({ manifest: MANIFEST })
    const token = await authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: ['db:read:documents:namespace:user-123'],
      operation: 'read',
      context: CONTEXT,
    })
    await expect(verifyCheckpoint(token, authority.jwks())).rejects.toMatchObject({ code: 'ERR_AUDIT_TAMPERED' })
  })

  it('writes a checkpoint only when the head moved, and after the seal', async () => {
    const sink = memorySink()
    const s = await signer()
    const log = withCheckpoints(createAuditLog({ sinks: [memorySink()] }), { signer: s, sink })
    await log.checkpoint()
    log.record({ action: 'mint', decision: 'allow' })
    await log.checkpoint()
    await log.checkpoint()
    // The log's own members work through the wrapper.
    expect(log.stats().recorded).toBe(1)
    await log.close()
    const anchors = await readCheckpoints(sink.lines.join('\n'), s.jwks())
    expect(sink.lines).toHaveLength(3)
    expect(anchors[0]).toMatchObject({ seq: 1, sealed: true, events: 2 })
  })

  it('validates its options', async () => {
    const log = createAuditLog({ sinks: [memorySink()] })
    const signer = { kid: 'k', sign: () => '' }
    const sink = memorySink()
    await expectOptionMisuse(() => withCheckpoints(log, { signer: undefined as never, sink }), { path: 'options.signer' })
    await expectOptionMisuse(() => withCheckpoints(log, { signer: { kid: '', sign: () => '' }, sink }), { path: 'options.signer.kid' })
    await expectOptionMisuse(() => withCheckpoints(log, { signer, sink: {} as never }), { path: 'options.sink' })
    await expectOptionMisuse(() => withCheckpoints(log, { signer, sink, intervalMs: 5 }), { path: 'options.intervalMs' })
    await expectOptionMisuse(() => withCheckpoints(log, { signer, sink, onError: 'warn' as never }), { path: 'options.onError' })
    await expectOptionMisuse(() => withCheckpoints(log, { signer, sink, interval: 1000 } as never), { path: 'options.interval' })
    await expectOptionMisuse(() => withCheckpoints({} as never, { signer, sink }), { path: 'log' })
    const ed = generateKeyPairSync('ed25519').privateKey
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const d = ec.privateKey.export({ format: 'jwk' }).d as string
    await expectOptionMisuse(() => createCheckpointSigner({ privateKey: ed, kid: 'k' }), { path: 'privateKey' })
    await expectOptionMisuse(() => createCheckpointSigner({ privateKey: ec.publicKey, kid: 'k' }), { path: 'privateKey' })
    await expectOptionMisuse(() => createCheckpointSigner({ privateKey: { kty: 'EC', crv: 'P-256', d } as never, kid: 'k' }), {
      path: 'privateKey',
      secrets: [d],
    })
    await expectOptionMisuse(() => createCheckpointSigner({ privateKey: 'pem' as never, kid: 'k' }), { path: 'privateKey' })
    await expectOptionMisuse(() => createCheckpointSigner({ privateKey: ec.privateKey, kid: 'k'.repeat(129) }), { path: 'kid' })
    await expectOptionMisuse(() => createCheckpointSigner({ privateKey: ec.privateKey, kid: 'k', alg: 'ES256' } as never), { path: 'alg' })
    await expect(createCheckpointSigner({ privateKey: ec.privateKey, kid: 'k' })).resolves.toMatchObject({ kid: 'k' })
    await log.close()
  })
})

describe('agent-trust audit verify --checkpoints --jwks', () => {
  it('passes an untouched trail, fails a deleted chain and a forged checkpoint, refuses half the options', async () => {
    const { cliInProcess } = await import('../support/cli.js')
    const t = await trail()
    const jwksFile = join(dir, 'checkpoint-jwks.json')
    writeFileSync(jwksFile, JSON.stringify(t.jwks))
    const args = ['audit', 'verify', t.file, '--require-sealed', '--checkpoints', t.checkpoints, '--jwks', jwksFile]
    expect((await cliInProcess(args)).code).toBe(0)
    const victim = t.chainIds[0] as string
    writeFileSync(
      t.file,
      `${lines(t.file)
        .filter((l) => !l.includes(victim))
        .join('\n')}\n`,
    )
    expect((await cliInProcess(['audit', 'verify', t.file, '--require-sealed'])).code).toBe(0)
    const cut = await cliInProcess([...args, '--json'])
    expect(cut.code).toBe(1)
    expect(cut.stdout).toContain('ERR_AUDIT_TAMPERED')
    const other = await signer()
    writeFileSync(jwksFile, JSON.stringify(other.jwks()))
    const forged = await cliInProcess([...args, '--json'])
    expect(forged.code).toBe(1)
    expect(JSON.parse(forged.stdout)).toMatchObject({ error: { code: 'ERR_AUDIT_TAMPERED' } })
    expect((await cliInProcess(['audit', 'verify', t.file, '--checkpoints', t.checkpoints])).code).toBe(2)
    const missing = await cliInProcess([
      'audit',
      'verify',
      t.file,
      '--checkpoints',
      t.checkpoints,
      '--jwks',
      join(dir, 'nope.json'),
      '--json',
    ])
    expect(missing.code).toBe(4)
    expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: 'ERR_CONFIG_INVALID' } })
  })
})
