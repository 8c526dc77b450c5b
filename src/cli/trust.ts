/**
 * `agent-trust trust list|request|approve|deny`: the human side of trust changes. The CLI only records requests and decisions in the shared store; the
 * authority applies an approved change (and revokes the agent's outstanding tokens) at its
 * next `syncTrustChanges()`.
 */
import { randomUUID } from 'node:crypto'
import { FileTrustChangeStore, isRaise, notStale, effectiveLevel } from '../authority/trust-changes.js'
import type { TrustChangeRequest, TrustChangeStatus, TrustChangeStore } from '../authority/types.js'
import type { AgentDeclaration } from '../config/manifest.js'
import type { TrustLevel } from '../policy/trust.js'
import { TrustChangeDenied } from '../errors.js'
import { isTrustLevel, levelRank } from '../policy/trust.js'
import { escapeText, EXIT, str, UsageError, type CommandGroup, type Context, type ExitCode } from './run.js'
import { loadManifest, operator, OPERATOR_HELP, OPERATOR_OPTIONS, withAudit } from './shared.js'
import { trustChangeApplied, trustChangeDenied, trustChangeRefused, trustChangeRequested } from '../audit/events.js'

export const DEFAULT_TRUST_STORE = 'agent-trust-trust-changes.json'

const STORE_OPTION = { store: { type: 'string' as const }, prefix: { type: 'string' as const } }
const STORE_HELP = `  --store <file>        a trust-change file shared with the authority (default:
                        AGENT_TRUST_TRUST_STORE, else ${DEFAULT_TRUST_STORE})
  --prefix <p>          with REDIS_URL: the Redis store's key prefix (default:
                        AGENT_TRUST_REDIS_PREFIX, else agent-trust)

With REDIS_URL set and no --store/AGENT_TRUST_TRUST_STORE, requests and decisions go to
the Redis that the authority's revocation store uses (its default trust-change store):
decisions are ordered by that store and in force on every replica at its next mint.`

/** The trust-change store and, on Redis, the spawned agents the authority registered there. */
interface OpenStore {
  readonly store: TrustChangeStore
  /** A spawned agent's declaration, from the shared store (undefined: none, or a file store). */
  spawned(id: string): Promise<AgentDeclaration | undefined>
  /** On Redis: revoke the agent's tokens issued so far, dated by the store (as the authority does on applying a change). */
  readonly revokeIssuedSoFar?: (agentId: string) => Promise<number>
  close(): Promise<void>
}

async function openStore(ctx: Context): Promise<OpenStore> {
  const file = str(ctx.values, 'store') ?? ctx.io.env.AGENT_TRUST_TRUST_STORE
  const url = ctx.io.env.REDIS_URL
  if (file !== undefined || url === undefined || url === '') {
    const store = new FileTrustChangeStore(file ?? DEFAULT_TRUST_STORE)
    return { store, spawned: async () => undefined, close: () => store.close() }
  }
  const [{ createRedisStore }, { RedisTrustChangeStore }] = await Promise.all([
    import('../revocation/redis-entry.js'),
    import('../authority/trust-changes-redis.js'),
  ])
  const prefix = str(ctx.values, 'prefix') ?? ctx.io.env.AGENT_TRUST_REDIS_PREFIX
  const revocations = createRedisStore({ url, commandTimeoutMs: 2000, ...(prefix === undefined ? {} : { prefix }) })
  return {
    store: new RedisTrustChangeStore(revocations),
    spawned: async (id) => (await revocations.spawnedAgent(id))?.declaration as AgentDeclaration | undefined,
    revokeIssuedSoFar: (agentId) => revocations.revokeAgentNow(agentId),
    close: () => revocations.close(),
  }
}

async function withStore<T>(ctx: Context, fn: (s: OpenStore) => Promise<T>): Promise<T> {
  const s = await openStore(ctx)
  try {
    return await fn(s)
  } finally {
    await s.close()
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function requestId(v: string): string {
  if (!UUID.test(v)) throw new UsageError('a request id is the UUID printed by `trust list`')
  return v
}

function row(r: TrustChangeRequest): string {
  const decided =
    r.status === 'pending'
      ? ''
      : ` by ${r.decidedBy ?? '?'} at ${r.decidedAt ?? '?'}${r.appliedAt === undefined ? (r.status === 'approved' ? ' (not applied yet)' : '') : ` (applied ${r.appliedAt})`}`
  // The store is a shared file: everything in it is printed escaped.
  return escapeText(
    `${r.id}  ${r.status.toUpperCase().padEnd(8)} ${r.agentId} ${r.from} -> ${r.to} (${isRaise(r) ? 'raise' : 'lower'})  requested by ${r.requestedBy} at ${r.createdAt}: ${r.reason}${decided}`,
  )
}

async function list(ctx: Context): Promise<ExitCode> {
  const status = str(ctx.values, 'status') ?? 'pending'
  if (!['pending', 'approved', 'denied', 'all'].includes(status)) throw new UsageError('--status is pending, approved, denied or all')
  const requests = await withStore(ctx, ({ store }) => store.list(status === 'all' ? undefined : (status as TrustChangeStatus)))
  ctx.print(
    { requests },
    requests.length === 0 ? `no ${status === 'all' ? '' : `${status} `}trust-change requests` : requests.map(row).join('\n'),
  )
  return EXIT.ok
}

async function request(ctx: Context): Promise<ExitCode> {
  const [agentId, level] = ctx.positionals as [string, string]
  const reason = str(ctx.values, 'reason')
  if (reason === undefined || reason.trim() === '') throw new UsageError('--reason is required')
  if (!isTrustLevel(level)) throw new UsageError('the level is L0, L1, L2 or L3')
  const manifest = loadManifest(ctx)
  return withStore(ctx, async ({ store, spawned }) => {
    // A manifest agent, or (on Redis) one the authority spawned: its declaration is in the store.
    const declared = async (id: string): Promise<AgentDeclaration | undefined> =>
      manifest.agents.find((a) => a.id === id) ?? (await spawned(id))
    const agent = await declared(agentId)
    if (agent === undefined)
      throw new TrustChangeDenied(`agent "${agentId.slice(0, 64)}" is not in the manifest`, { details: { agentId: agentId.slice(0, 64) } })
    const by = operator(ctx)
    return withAudit(ctx, async (audit) => {
      const all = await store.list()
      const from = effectiveLevel(agentId, agent.trustLevel, all)
      try {
        if (from === level) throw new TrustChangeDenied(`agent "${agentId}" is already ${level}`, { details: { agentId } })
        if (agent.parent !== undefined) {
          const parentLevel: TrustLevel = effectiveLevel(agent.parent, (await declared(agent.parent))?.trustLevel ?? 'L0', all)
          if (levelRank(level) > levelRank(parentLevel))
            throw new TrustChangeDenied("a spawned agent may not exceed its parent's level", { details: { agentId } })
        }
      } catch (e) {
        audit.record(trustChangeRefused(agentId, by, 'request refused', 'cli'))
        throw e
      }
      const req: TrustChangeRequest = {
        id: randomUUID(),
        agentId,
        from,
        to: level,
        reason: reason.slice(0, 500),
        requestedBy: by,
        createdAt: new Date().toISOString(),
        status: 'pending',
      }
      try {
        await store.add(req)
      } catch (e) {
        audit.record(trustChangeRefused(agentId, by, 'request refused', 'cli'))
        throw e
      }
      audit.record(trustChangeRequested(req, by, 'cli'))
      ctx.print(
        { request: req },
        `requested ${req.id}: ${agentId} ${from} -> ${level}; an operator must approve it (agent-trust trust approve ${req.id})`,
      )
      return EXIT.ok
    })
  })
}

async function decide(ctx: Context, approved: boolean): Promise<ExitCode> {
  const id = requestId(ctx.positionals[0] as string)
  return withStore(ctx, (s) => decideIn(ctx, s, id, approved))
}

async function decideIn(ctx: Context, { store, spawned, revokeIssuedSoFar }: OpenStore, id: string, approved: boolean): Promise<ExitCode> {
  const by = operator(ctx)
  const note = str(ctx.values, 'note')
  const req = await store.get(id)
  if (req === undefined) throw new TrustChangeDenied('no such trust-change request', { details: { rule: 'unknown-request' } })
  if (approved && ctx.values.yes !== true) {
    // What others wrote comes first, escaped; what the approval does is computed here from
    // the request's levels and printed last, right above the prompt, so no text above it can
    // stand in for it.
    const question = [
      `Trust-change request ${escapeText(req.id)}`,
      `  requested by: ${escapeText(req.requestedBy, { max: 128 })}`,
      `  reason:       ${escapeText(req.reason, { max: 500 })}`,
      `Approving this is ${isRaise(req) ? 'RAISING' : 'LOWERING'} ${escapeText(req.agentId)} from ${req.from} to ${req.to}.`,
      'Type "yes" to approve: ',
    ].join('\n')
    if (ctx.io.confirm === undefined) throw new UsageError('stdin is not a terminal: pass --yes to approve non-interactively')
    if (!(await ctx.io.confirm(question))) {
      throw new TrustChangeDenied('not approved (nothing changed)', { details: { rule: 'not-approved' } })
    }
  }
  // Stale check against the manifest the authority uses, when it is readable here.
  let base: (agentId: string) => ReturnType<typeof effectiveLevel> | undefined = () => undefined
  if (approved) {
    const manifest = loadManifest(ctx)
    const child = manifest.agents.some((a) => a.id === req.agentId) ? undefined : await spawned(req.agentId)
    base = (agentId) => manifest.agents.find((a) => a.id === agentId)?.trustLevel ?? (agentId === child?.id ? child.trustLevel : undefined)
  }
  return withAudit(ctx, async (audit) => {
    let decided: TrustChangeRequest
    try {
      decided = await store.decide(
        id,
        { approved, decidedBy: by, ...(note === undefined ? {} : { note }), decidedAt: new Date().toISOString() },
        notStale(base),
      )
    } catch (e) {
      audit.record(trustChangeRefused(req.agentId, by, `decision refused (${id})`, 'cli'))
      throw e
    }
    // On Redis the approved level is in force at every replica's next mint, and the agent's
    // outstanding tokens are revoked here, now (a lowered parent's revocation also refuses its
    // descendants' tokens, which name it as an ancestor). On a file store the authorities
    // apply the change, and revoke, at their next sync.
    const revokeNow = approved && revokeIssuedSoFar !== undefined
    if (revokeNow) await revokeIssuedSoFar(decided.agentId)
    audit.record(
      approved
        ? trustChangeApplied(decided, by, { applied: 'approved', tokensRevoked: revokeNow, via: 'cli' })
        : trustChangeDenied(decided, by, { via: 'cli' }),
    )
    const human = !approved
      ? `denied ${id}: ${decided.agentId} stays ${decided.from}.`
      : revokeNow
        ? `approved ${id}: ${decided.agentId} ${decided.from} -> ${decided.to}, in force on every authority sharing the store; the agent's outstanding tokens are revoked.`
        : `approved ${id}: ${decided.agentId} ${decided.from} -> ${decided.to}. The authority applies it, and revokes the agent's outstanding tokens, at its next sync.`
    ctx.print({ request: decided }, escapeText(human))
    return EXIT.ok
  })
}

export const trustCommands: CommandGroup = {
  name: 'trust',
  summary: 'list, request, approve and deny trust-level changes (human approval)',
  subcommands: [
    {
      name: 'list',
      summary: 'list trust-change requests (pending by default)',
      options: { ...STORE_OPTION, status: { type: 'string' } },
      help: `Usage: agent-trust trust list [--status pending|approved|denied|all] [--store <file>]

Lists requests, oldest first. --json prints {"requests": [...]}.

Options:
  --status <s>          pending (default), approved, denied or all
${STORE_HELP}`,
      run: list,
    },
    {
      name: 'request',
      summary: "file a request to change an agent's level",
      args: 2,
      options: { ...STORE_OPTION, ...OPERATOR_OPTIONS, reason: { type: 'string' } },
      help: `Usage: agent-trust trust request <agent-id> <L0|L1|L2|L3> --reason <text> [--by <name>]

Files a pending request. Nothing changes until an operator approves it. The agent must be in
the manifest; the request records the agent's current level (manifest plus approved changes).
Lowering an agent to L0 is how to quarantine it durably (it then gets no tokens at all).

Options:
  --reason <text>       why (required; shown to the approver and audited)
${STORE_HELP}
${OPERATOR_HELP}`,
      run: request,
    },
    {
      name: 'approve',
      summary: 'approve a pending request (asks for confirmation)',
      args: 1,
      options: { ...STORE_OPTION, ...OPERATOR_OPTIONS, note: { type: 'string' }, yes: { type: 'boolean', short: 'y' } },
      help: `Usage: agent-trust trust approve <request-id> [--by <name>] [--note <text>] [--yes]

Approves a pending request, once: a request already decided (here or by the authority's
approver) is refused with exit 1. A request made against a level the agent no longer has
is refused as stale. The authority applies the change at its next syncTrustChanges() and
revokes the agent's outstanding tokens then.

Asks "yes" on a terminal; without a terminal, --yes is required (exit 2 otherwise).

Options:
  --note <text>         recorded with the decision
  -y, --yes             do not ask
${STORE_HELP}
${OPERATOR_HELP}`,
      run: (ctx) => decide(ctx, true),
    },
    {
      name: 'deny',
      summary: 'deny a pending request',
      args: 1,
      options: { ...STORE_OPTION, ...OPERATOR_OPTIONS, note: { type: 'string' } },
      help: `Usage: agent-trust trust deny <request-id> [--by <name>] [--note <text>]

Denies a pending request (the level stays as it is). Exit 1 if it was already decided.

Options:
  --note <text>         recorded with the decision
${STORE_HELP}
${OPERATOR_HELP}`,
      run: (ctx) => decide(ctx, false),
    },
  ],
}
