import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import {
  createAuditLog,
  fileSink,
  memorySink,
  stdoutSink,
  verifyAuditLines,
  verifyAuditTrail,
  type AuditEventInput,
} from 'agent-trust/audit'
import { canonicalEvent, chainEvent, auditDigest, sanitizeAuditInput } from '../../src/audit/chain.js'
import { canonicalJson } from '../../src/lib/hash.js'
import { CONTEXT } from '../support/seed.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

const dir = mkdtempSync(join(tmpdir(), 'agent-trust-chain-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function event(i: number): AuditEventInput {
  return {
    action: 'tool_call',
    decision: i % 3 === 0 ? 'deny' : 'allow',
    ...(i % 3 === 0 ? { code: 'ERR_SCOPE_DENIED' as const } : {}),
    origin: 'agent-summarizer-v2',
    destination: 'agent-database-reader',
    capability: [`db:read:documents:namespace:user-${i}`],
    tool: 'read_documents',
    jti: `3f1c2b9e-8a7d-4c3b-9f2e-${String(i).padStart(12, '0')}`,
    trustLevel: 'L2',
    context: CONTEXT,
    enforced: true,
  }
}

/** A sealed chain of `n` events plus its seal, as lines. */
async function trail(n: number, options: { hmacKey?: string; chainId?: string } = {}): Promise<string[]> {
  const sink = memorySink()
  const log = createAuditLog({ sinks: [sink], ...options })
  for (let i = 0; i < n; i++) log.record(event(i))
  await log.close()
  return [...sink.lines]
}

const parse = (l: string) => JSON.parse(l) as Record<string, unknown>

/** Re-hash an edited line the way an attacker without a key would. */
function rehash(obj: Record<string, unknown>, key?: string): string {
  const { hash: _hash, ...rest } = obj
  const h = auditDigest(key)(canonicalJson(rest))
  return JSON.stringify({ ...rest, hash: h })
}

describe('audit chain: a clean trail verifies', () => {
  it('reports every chain with its head and seal', async () => {
    const lines = await trail(20)
    const r = verifyAuditLines(lines, { requireSealed: true })
    expect(r.ok).toBe(true)
    expect(r.events).toBe(21)
    expect(r.chains).toHaveLength(1)
    expect(r.chains[0]).toMatchObject({ events: 21, firstSeq: 0, lastSeq: 20, sealed: true })
    expect(r.chains[0]?.head).toBe(parse(lines[20] as string).hash)
  })

  it('keeps several chains in one file apart, however they interleave', async () => {
    const a = await trail(30)
    const b = await trail(17)
    const mixed: string[] = []
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (a[i] !== undefined) mixed.push(a[i] as string)
      if (b[i] !== undefined) mixed.push(b[i] as string)
    }
    const r = verifyAuditLines(mixed, { requireSealed: true })
    expect(r.ok).toBe(true)
    expect(r.chains.map((c) => c.events).sort()).toEqual([18, 31])
  })

  it('an empty trail is fine; an open (unsealed) chain is fine unless seals are required', async () => {
    expect(verifyAuditLines([]).ok).toBe(true)
    const open = (await trail(5)).slice(0, -1)
    expect(verifyAuditLines(open).ok).toBe(true)
    expect(verifyAuditLines(open).chains[0]?.sealed).toBe(false)
    expect(verifyAuditLines(open, { requireSealed: true }).firstBreak?.kind).toBe('truncated')
  })
})

describe('audit chain: a whole chain written by someone else', () => {
  it('verifies on its own (SHA-256, no key); with requireAnchored, the chain nobody anchored is reported', async () => {
    const real = await trail(5)
    const forged = await trail(4) // another writer's whole chain, from seq 0
    const head = verifyAuditLines(real).chains[0]!
    const anchors = [{ chainId: head.chainId, seq: head.lastSeq, hash: head.head }]
    const mixed = [...real, ...forged]
    expect(verifyAuditLines(mixed, { anchors }).ok).toBe(true)
    const r = verifyAuditLines(mixed, { anchors, requireAnchored: true })
    expect(r.firstBreak).toMatchObject({ kind: 'inserted', line: real.length + 1, seq: 0 })
    expect(r.firstBreak?.chainId).not.toBe(head.chainId)
    // Every chain anchored: it verifies.
    const other = verifyAuditLines(forged).chains[0]!
    expect(
      verifyAuditLines(mixed, {
        anchors: [...anchors, { chainId: other.chainId, seq: other.lastSeq, hash: other.head }],
        requireAnchored: true,
      }).ok,
    ).toBe(true)
  })
})

describe('audit chain: one reading of every line', () => {
  it('a line that parses to the hashed event but is spelled otherwise is edited (duplicate member, order, spacing, escapes, CRLF)', async () => {
    const lines = await trail(6)
    const deny = lines.findIndex((l) => parse(l).decision === 'deny')
    expect(deny).toBeGreaterThanOrEqual(0)
    const text = lines[deny] as string
    const e = parse(text)
    const { hash, ...rest } = e
    const spelled = [
      // JSON.parse keeps the last "decision"; a reader that keeps the first, or grep, sees "allow".
      text.replace('"decision":"deny"', '"decision":"allow","decision":"deny"'),
      JSON.stringify({ hash, ...rest }),
      JSON.stringify(e, null, 1).replace(/\n/g, ''),
      text.replace('"action":', '"\\u0061ction":'),
      text.replace(/"seq":(\d+)/, '"seq":$1.0'),
      `${text}\r`,
      ` ${text}`,
    ]
    for (const forged of spelled) {
      expect(JSON.parse(forged), forged).toEqual(e)
      const copy = [...lines]
      copy[deny] = forged
      expect(verifyAuditLines(copy).firstBreak, forged).toMatchObject({ kind: 'edited', line: deny + 1 })
    }
    expect(verifyAuditLines(lines).ok).toBe(true)
  })
})

describe('audit chain: every tamper kind is detected, at the first broken link', () => {
  it('edited in place (hash not recomputed)', async () => {
    const lines = await trail(10)
    const e = parse(lines[3] as string)
    expect(e.decision).toBe('deny')
    e.decision = 'allow'
    delete e.code
    lines[3] = JSON.stringify(e)
    const r = verifyAuditLines(lines)
    expect(r.ok).toBe(false)
    expect(r.firstBreak).toMatchObject({ kind: 'edited', line: 4, seq: 3 })
  })

  it('edited and re-hashed: the next link breaks and names the edited event', async () => {
    const lines = await trail(10)
    const e = parse(lines[4] as string)
    e.origin = 'someone-else'
    lines[4] = rehash(e)
    expect(verifyAuditLines(lines).firstBreak).toMatchObject({ kind: 'edited', line: 6, seq: 4, relatedLine: 5 })
  })

  it('deleted: one event, several, the first, the seal', async () => {
    const lines = await trail(10)
    expect(verifyAuditLines([...lines.slice(0, 3), ...lines.slice(4)]).firstBreak).toMatchObject({ kind: 'deleted', seq: 3, line: 4 })
    expect(verifyAuditLines([...lines.slice(0, 3), ...lines.slice(7)]).firstBreak?.message).toMatch(/seq 3-6 missing/)
    expect(verifyAuditLines(lines.slice(1)).firstBreak).toMatchObject({ kind: 'deleted', seq: 0 })
    expect(verifyAuditLines(lines.slice(0, -1), { requireSealed: true }).firstBreak).toMatchObject({ kind: 'truncated', seq: 10 })
  })

  it('inserted: a duplicated event, a forged event that links correctly, an event after the seal', async () => {
    const lines = await trail(10)
    expect(verifyAuditLines([...lines.slice(0, 6), lines[2] as string, ...lines.slice(6)]).firstBreak).toMatchObject({
      kind: 'inserted',
      line: 7,
      seq: 2,
    })
    // A forgery that takes the place of seq 5 with a valid link and hash: the real seq 5 then repeats.
    const prev = parse(lines[4] as string)
    const forged = { ...parse(lines[5] as string), origin: 'attacker', prev: prev.hash }
    const withForgery = [...lines.slice(0, 5), rehash(forged), ...lines.slice(5)]
    expect(verifyAuditLines(withForgery).firstBreak).toMatchObject({ kind: 'inserted', line: 7, seq: 5 })
    const seal = parse(lines[10] as string)
    const after = rehash({ ...parse(lines[9] as string), seq: 11, prev: seal.hash })
    expect(verifyAuditLines([...lines, after]).firstBreak).toMatchObject({ kind: 'inserted', seq: 11 })
  })

  it('reordered: adjacent swap, an event moved later, an event moved earlier', async () => {
    const lines = await trail(10)
    const swap = [...lines]
    ;[swap[3], swap[4]] = [swap[4] as string, swap[3] as string]
    expect(verifyAuditLines(swap).firstBreak).toMatchObject({ kind: 'reordered', seq: 3, line: 4 })
    const later = [...lines.slice(0, 2), ...lines.slice(3, 8), lines[2] as string, ...lines.slice(8)]
    expect(verifyAuditLines(later).firstBreak?.kind).toBe('reordered')
    const earlier = [...lines.slice(0, 1), lines[6] as string, ...lines.slice(1, 6), ...lines.slice(7)]
    expect(verifyAuditLines(earlier).firstBreak?.kind).toBe('reordered')
  })

  it('truncated: cut inside a line, cut at a line boundary (seal required or anchor kept)', async () => {
    const lines = await trail(10)
    const file = join(dir, 'cut.jsonl')
    const whole = lines.map((l) => `${l}\n`).join('')
    writeFileSync(file, whole.slice(0, whole.length - 40))
    const cut = await verifyAuditTrail(file)
    expect(cut.ok).toBe(false)
    expect(cut.firstBreak).toMatchObject({ kind: 'truncated', line: 11 })
    writeFileSync(
      file,
      lines
        .slice(0, 7)
        .map((l) => `${l}\n`)
        .join(''),
    )
    expect((await verifyAuditTrail(file)).ok).toBe(true) // indistinguishable from a live writer...
    expect((await verifyAuditTrail(file, { requireSealed: true })).firstBreak?.kind).toBe('truncated')
    const last = parse(lines[10] as string)
    const anchor = { chainId: last.chainId as string, seq: last.seq as number, hash: last.hash as string }
    expect((await verifyAuditTrail(file, { anchors: [anchor] })).firstBreak).toMatchObject({ kind: 'truncated', seq: 7 })
  })

  it('a whole chain re-hashed by an attacker still fails against an anchor, or without the HMAC key', async () => {
    const lines = await trail(6)
    const head = parse(lines[6] as string)
    const anchor = { chainId: head.chainId as string, seq: head.seq as number, hash: head.hash as string }
    let prev = parse(lines[0] as string).prev as string
    const rewritten = lines.map((l, i) => {
      const e = parse(l)
      if (i === 3) e.decision = 'allow'
      e.prev = prev
      const out = rehash(e)
      prev = parse(out).hash as string
      return out
    })
    expect(verifyAuditLines(rewritten).ok).toBe(true) // a bare hash chain cannot see this...
    expect(verifyAuditLines(rewritten, { anchors: [anchor] }).firstBreak?.kind).toBe('edited') // ...an anchor can
    const key = 'k'.repeat(32)
    const keyed = await trail(6, { hmacKey: key })
    expect(verifyAuditLines(keyed, { hmacKey: key, requireSealed: true }).ok).toBe(true)
    expect(verifyAuditLines(keyed).firstBreak?.kind).toBe('edited')
    const forged = keyed.map((l, i) => (i === 3 ? rehash({ ...parse(l), decision: 'allow' }) : l))
    expect(verifyAuditLines(forged, { hmacKey: key }).firstBreak).toMatchObject({ kind: 'edited', line: 4 })
  })

  it('anchors: a missing anchored chain is reported; a matching anchor passes', async () => {
    const lines = await trail(3)
    const e = parse(lines[2] as string)
    expect(verifyAuditLines(lines, { anchors: [{ chainId: e.chainId as string, seq: 2, hash: e.hash as string }] }).ok).toBe(true)
    expect(verifyAuditLines(lines, { anchors: [{ chainId: 'gone', seq: 5, hash: e.hash as string }] }).firstBreak).toMatchObject({
      kind: 'deleted',
      chainId: 'gone',
    })
  })

  it('malformed lines and foreign JSON are reported with their line number', async () => {
    const lines = await trail(3)
    expect(verifyAuditLines([lines[0] as string, 'not json', ...lines.slice(1)]).firstBreak).toMatchObject({ kind: 'malformed', line: 2 })
    expect(verifyAuditLines([lines[0] as string, '{"hello":1}']).firstBreak).toMatchObject({ kind: 'malformed', line: 2 })
  })

  it('a trimmed start is accepted only when asked', async () => {
    const lines = (await trail(10)).slice(4)
    expect(verifyAuditLines(lines).firstBreak?.kind).toBe('deleted')
    expect(verifyAuditLines(lines, { allowTrimmedStart: true }).ok).toBe(true)
  })

  it('property: any single deletion, duplication, swap or edit of a sealed chain is detected', async () => {
    const lines = await trail(12)
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('delete' as const), i: fc.nat(lines.length - 1) }),
      fc.record({ op: fc.constant('duplicate' as const), i: fc.nat(lines.length - 1), j: fc.nat(lines.length) }),
      fc.record({ op: fc.constant('swap' as const), i: fc.nat(lines.length - 2) }),
      fc.record({
        op: fc.constant('edit' as const),
        i: fc.nat(lines.length - 1),
        field: fc.constantFrom('origin', 'decision', 'jti', 'time', 'tool'),
        value: fc.string(),
      }),
    )
    fc.assert(
      fc.property(mutation, (m) => {
        const t = [...lines]
        if (m.op === 'delete') t.splice(m.i, 1)
        else if (m.op === 'duplicate') t.splice(m.j, 0, t[m.i] as string)
        else if (m.op === 'swap') [t[m.i], t[m.i + 1]] = [t[m.i + 1] as string, t[m.i] as string]
        else {
          const e = parse(t[m.i] as string)
          if (e[m.field] === m.value) return
          e[m.field] = m.value
          t[m.i] = JSON.stringify(e)
        }
        expect(verifyAuditLines(t, { requireSealed: true }).ok).toBe(false)
      }),
      { numRuns: 300 },
    )
  })
})

describe('audit events: what is written', () => {
  it('property: the fast serializer writes exactly the canonical JSON', () => {
    const str = fc.string({ unit: 'binary', maxLength: 40 })
    const input = fc.record(
      {
        action: fc.constantFrom('mint', 'tool_call', 'egress', 'weird'),
        decision: fc.constantFrom('allow', 'deny'),
        code: str,
        origin: str,
        destination: str,
        capability: fc.array(str, { maxLength: 4 }),
        tool: str,
        jti: str,
        trustLevel: str,
        context: fc.record({ session_id: str, user_id: str, task_id: str }, { requiredKeys: [] }),
        chain: fc.array(str, { maxLength: 3 }),
        actors: fc.array(str, { maxLength: 3 }),
        argsHash: str,
        enforced: fc.boolean(),
        note: str,
      },
      { requiredKeys: ['action', 'decision'] },
    )
    fc.assert(
      fc.property(input, fc.nat(), (e, seq) => {
        const body = sanitizeAuditInput(e as AuditEventInput)
        const { line } = chainEvent(body, 'chain-1', seq, 'A'.repeat(43), '2026-01-01T00:00:00.000Z', auditDigest())
        const parsed = JSON.parse(line) as Record<string, unknown>
        const { hash, ...rest } = parsed
        expect(canonicalEvent(body)).toBe(canonicalJson(rest))
        expect(auditDigest()(canonicalJson(rest))).toBe(hash)
      }),
      { numRuns: 300 },
    )
  })

  it('drops unknown members, bounds sizes, redacts anything token-shaped', async () => {
    const sink = memorySink()
    const log = createAuditLog({ sinks: [sink] })
    const jws = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl'
    log.record({
      action: 'tool_call',
      decision: 'allow',
      note: `bearer ${jws}`,
      origin: 'x'.repeat(5000),
      args: { secret: 'hunter2' },
      token: jws,
    } as unknown as AuditEventInput)
    await log.close()
    const line = sink.lines[0] as string
    expect(line).not.toContain('eyJhbGci')
    expect(line).not.toContain('hunter2')
    expect(line).toContain('[redacted-token]')
    expect(line.length).toBeLessThan(1200)
    expect(Object.keys(parse(line))).not.toContain('args')
  })

  it('an application cannot write a seal: its `audit` events are marked', async () => {
    const sink = memorySink()
    const log = createAuditLog({ sinks: [sink] })
    log.record({ action: 'audit', decision: 'allow', note: 'seal' })
    log.record(event(1))
    await log.flush()
    const r = verifyAuditLines(sink.lines)
    expect(r.ok).toBe(true)
    expect(r.chains[0]?.sealed).toBe(false)
    expect(parse(sink.lines[0] as string).note).toBe('application: seal')
    await log.close()
  })

  it('validates its options', async () => {
    const key = 'audit-hmac-key-secret-0123'
    const sinks = [memorySink()]
    await expectOptionMisuse(() => createAuditLog({ sinks: [] }), { path: 'sinks' })
    await expectOptionMisuse(() => createAuditLog({ sinks: [{ write() {} } as never] }), { path: 'sinks[0]' })
    await expectOptionMisuse(() => createAuditLog({ sinks, chainId: 'has space' }), { path: 'chainId' })
    await expectOptionMisuse(() => createAuditLog({ sinks, flushIntervalMs: 0 }), { path: 'flushIntervalMs' })
    await expectOptionMisuse(() => createAuditLog({ sinks, flushIntervalMs: '100' as never }), { path: 'flushIntervalMs' })
    await expectOptionMisuse(() => createAuditLog({ sinks, hmacKey: 'short-secret' }), { path: 'hmacKey', secrets: ['short-secret'] })
    await expectOptionMisuse(() => createAuditLog({ sinks, batchSize: 10, maxPendingEvents: 5 }), { path: 'maxPendingEvents' })
    await expectOptionMisuse(() => createAuditLog({ sinks, onAuditFailure: 'warn' as never }), { path: 'onAuditFailure' })
    const typo = await expectOptionMisuse(() => createAuditLog({ sinks, hmacKey: key, onAuditFaliure: 'deny' } as never), {
      path: 'onAuditFaliure',
      secrets: [key],
    })
    expect(typo.message).toContain('onAuditFailure')
    await expectOptionMisuse(() => createAuditLog({ sinks, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
    await expectOptionMisuse(() => fileSink(''), { path: 'path' })
    await expectOptionMisuse(() => fileSink('/tmp/x.jsonl', { fsnyc: false } as never), { path: 'options.fsnyc' })
    await expectOptionMisuse(() => stdoutSink({ stream: {} as never }), { path: 'stream' })
  })

  it('validates the trail verifier options, whichever entry point builds it', async () => {
    const key = 'short-secret'
    await expectOptionMisuse(() => verifyAuditLines([], { hmacKey: key }), { path: 'hmacKey', secrets: [key] })
    await expectOptionMisuse(() => verifyAuditLines([], { requireSealed: 'yes' as never }), { path: 'requireSealed' })
    await expectOptionMisuse(() => verifyAuditLines([], { anchors: [{ chainId: 'c', seq: 1.5, hash: 'h' }] }), { path: 'anchors[0].seq' })
    await expectOptionMisuse(() => verifyAuditLines([], { requireSeal: true } as never), { path: 'requireSeal' })
    await expectOptionMisuse(() => verifyAuditTrail([], { allowTrimmedStart: 1 as never }), { path: 'allowTrimmedStart' })
    await expectOptionMisuse(() => verifyAuditLines([], { [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
    // The digest refuses a short key itself too, whoever calls it.
    await expectOptionMisuse(() => auditDigest(key), { path: 'hmacKey', secrets: [key] })
    expect(verifyAuditLines([], { anchors: [{ chainId: 'c', seq: -1, hash: 'h', extra: 1 } as never] }).ok).toBe(false)
  })
})
