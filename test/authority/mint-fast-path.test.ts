/**
 * Minting with the in-memory store answers its registry and quarantine checks without a
 * promise; any other store is asked through its async methods. Both ways must decide alike:
 * two authorities with the same manifest and keys, one on the in-memory store as it is and
 * one on a subclass that overrides its quarantine check (so it takes the async way), run the
 * same random sequence of mints, tool mints, spawns and quarantines, and give the same
 * tokens (up to jti and time) or the same error codes, and, with a log, the same audit trail.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Authority, KeySet, MemoryAuditLog, MemoryReplayRevocationStore, type AuditLog } from 'agent-trust'
import { CONTEXT, decodePayload, MANIFEST } from '../support/kernel.js'

/** The in-memory store asked its async way: the authority cannot tell it is the in-memory one. */
class AskedStore extends MemoryReplayRevocationStore {
  asked = 0
  override async anyQuarantined(ids: readonly string[]): Promise<boolean> {
    this.asked++
    return super.anyQuarantined(ids)
  }
}

const AGENTS = ['moltbot-orchestrator', 'agent-summarizer-v2', 'agent-status-reader', 'agent-untrusted', 'agent-database-reader', 'nobody']
const SCOPES = [
  'db:read:documents:namespace:user-123',
  'db:write:documents:namespace:user-9',
  'tool:agent-database-reader:purge',
  'db:read:*',
  'x:y',
]
const agent = fc.oneof(fc.constantFrom(...AGENTS), fc.constantFrom('kid-1', 'kid-2'))

type Op =
  | { kind: 'mint'; subject: string; audience: string; scope: string[]; operation: 'read' | 'write' | 'execute'; ttl?: number }
  | { kind: 'tool'; subject: string; audience: string; tool: string; namespace: unknown }
  | { kind: 'spawn'; id: string; level: 'L1' | 'L2' }
  | { kind: 'quarantine'; id: string; elsewhere: boolean }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('mint' as const),
      subject: agent,
      audience: agent,
      scope: fc.array(fc.constantFrom(...SCOPES), { minLength: 0, maxLength: 3 }),
      operation: fc.constantFrom('read' as const, 'write' as const, 'execute' as const),
      ttl: fc.option(fc.constantFrom(1, 60, 301, 0.5), { nil: undefined }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('tool' as const),
      subject: agent,
      audience: agent,
      tool: fc.constantFrom('read_documents', 'write_document', 'purge', 'bad name'),
      namespace: fc.constantFrom('user-123', 'user-9', 'a:b', 7, undefined),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('spawn' as const),
      id: fc.constantFrom('kid-1', 'kid-2'),
      level: fc.constantFrom('L1' as const, 'L2' as const),
    }),
  },
  {
    weight: 2,
    // elsewhere: by another authority sharing the store (this one learns it from the store alone).
    arbitrary: fc.record({ kind: fc.constant('quarantine' as const), id: agent, elsewhere: fc.boolean() }),
  },
)

/** What an operation came to, comparable across the two authorities. */
async function outcome(a: Authority, other: Authority, o: Op): Promise<unknown> {
  try {
    if (o.kind === 'mint') {
      const token = await a.mint({
        subject: o.subject,
        audience: o.audience,
        scope: o.scope,
        operation: o.operation,
        context: CONTEXT,
        ttlSeconds: o.ttl,
      })
      return comparable(token)
    }
    if (o.kind === 'tool') {
      const r = await a.mintForTool({
        subject: o.subject,
        audience: o.audience,
        tool: o.tool,
        args: { namespace: o.namespace },
        context: CONTEXT,
      })
      return { ...r, token: comparable(r.token) }
    }
    if (o.kind === 'spawn') {
      const d = await a.spawn({
        parent: 'moltbot-orchestrator',
        child: { id: o.id, trustLevel: o.level, grants: ['db:read:documents:namespace:*'] },
      })
      return d.id
    }
    return await (o.elsewhere ? other : a).revokeAgent(o.id)
  } catch (e) {
    return { code: (e as { code?: unknown }).code }
  }
}

function comparable(token: string): unknown {
  const { jti, iat, nbf, exp, ...rest } = decodePayload(token) as Record<string, number>
  return { ...rest, lifetime: (exp as number) - (iat as number), nbfIsIat: nbf === iat, jti: typeof jti }
}

const trail = (log: MemoryAuditLog) => log.events.map(({ time: _t, jti: _j, ...e }) => e)

describe('minting: the in-memory fast path and the async path decide alike', () => {
  for (const audited of [false, true]) {
    it(`on random sequences of mints, tool mints, spawns and quarantines (${audited ? 'with' : 'without'} an audit log)`, async () => {
      const keys = await KeySet.create()
      let asked = 0
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 20 }), async (ops) => {
          const fastLog = new MemoryAuditLog()
          const slowLog = new MemoryAuditLog()
          const slowStore = new AskedStore()
          const audit = (log: AuditLog) => (audited ? { audit: log } : {})
          const fastStore = new MemoryReplayRevocationStore()
          const fast = await Authority.create({ manifest: MANIFEST, keys, store: fastStore, ...audit(fastLog) })
          const slow = await Authority.create({ manifest: MANIFEST, keys, store: slowStore, ...audit(slowLog) })
          const fastOther = await Authority.create({ manifest: MANIFEST, keys, store: fastStore })
          const slowOther = await Authority.create({ manifest: MANIFEST, keys, store: slowStore })
          for (const o of ops) expect(await outcome(fast, fastOther, o)).toEqual(await outcome(slow, slowOther, o))
          if (audited) expect(trail(fastLog)).toEqual(trail(slowLog))
          asked += slowStore.asked
        }),
        { numRuns: 150 },
      )
      // Not vacuous: the slow side went through the store's async check many times.
      expect(asked).toBeGreaterThan(100)
    })
  }
})
