/**
 * `agent-trust revoke token|agent`: write a revocation into the store the verifiers share
 * (Redis at REDIS_URL). The next call with a revoked token, or any token the agent was
 * issued up to now, is denied on every verifier using that store.
 */
import type { Manifest } from '../config/manifest.js'
import { isAgentId, isJti } from '../policy/claims.js'
import { nowSeconds } from '../lib/time.js'
import { AGENT_QUARANTINED } from '../revocation/store.js'
import { IDENTITY_REVOCATION_KEEP_MS } from '../revocation/certificates.js'
import type { RedisReplayRevocationStore } from '../revocation/redis.js'
import { agentSpiffeId, isSpiffeRepresentable } from '../identity/spiffe.js'
import { EXIT, Failed, quote, str, UsageError, type CommandGroup, type Context, type ExitCode, type OptionSpec } from './run.js'
import { loadManifest, operator, OPERATOR_HELP, OPERATOR_OPTIONS, withAudit } from './shared.js'
import { MAX_CLOCK_TOLERANCE_SECONDS, MAX_TOKEN_LIFETIME_SECONDS } from '../policy/limits.js'
import { revoked } from '../audit/events.js'

const STORE_OPTIONS: OptionSpec = { prefix: { type: 'string' } }
const STORE_HELP = `  --prefix <p>          the store's key prefix (default: AGENT_TRUST_REDIS_PREFIX, else agent-trust)

Needs REDIS_URL: a revocation only matters in the store the verifiers share.`

async function withRedisStore<T>(ctx: Context, fn: (store: RedisReplayRevocationStore) => Promise<T>): Promise<T> {
  const url = ctx.io.env.REDIS_URL
  if (url === undefined || url === '')
    throw new Failed('REDIS_URL is not set: a revocation must go to the store the verifiers share', EXIT.invalid, 'ERR_CONFIG_INVALID')
  const { createRedisStore } = await import('../revocation/redis-entry.js')
  const prefix = str(ctx.values, 'prefix') ?? ctx.io.env.AGENT_TRUST_REDIS_PREFIX
  const store = createRedisStore({ url, commandTimeoutMs: 2000, ...(prefix === undefined ? {} : { prefix }) })
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

async function revokeToken(ctx: Context): Promise<ExitCode> {
  const jti = ctx.positionals[0] as string
  if (!isJti(jti)) throw new UsageError("revoke token takes the token's jti (a UUID v4, see `token inspect`), never the token itself")
  return withRedisStore(ctx, (store) =>
    withAudit(ctx, async (audit) => {
      // Kept until any token with this jti (or a descendant) has certainly expired.
      const forgetAtMs = (nowSeconds() + MAX_TOKEN_LIFETIME_SECONDS + MAX_CLOCK_TOLERANCE_SECONDS + 1) * 1000
      await store.revokeToken(jti, forgetAtMs)
      audit.record(revoked({ kind: 'token', jti }, operator(ctx), 'cli'))
      ctx.print({ revoked: { jti } }, `revoked token ${jti} (and every token delegated from it)`)
      return EXIT.ok
    }),
  )
}

/** The agent and every agent the manifest declares under it (spawn parents), parents first. */
function lineage(manifest: Manifest, id: string): string[] {
  const out = [id]
  for (let i = 0; i < out.length; i++) for (const a of manifest.agents) if (a.parent === out[i] && !out.includes(a.id)) out.push(a.id)
  return out
}

async function revokeAgent(ctx: Context): Promise<ExitCode> {
  const id = ctx.positionals[0] as string
  if (!isAgentId(id)) throw new UsageError('not an agent id')
  let ids = [id]
  let trustDomain: string | undefined
  if (ctx.values.unlisted !== true) {
    const manifest = loadManifest(ctx)
    trustDomain = manifest.trustDomain
    if (!manifest.agents.some((a) => a.id === id))
      throw new Failed(`agent ${quote(id)} is not in the manifest (a spawned agent? pass --unlisted)`, EXIT.failed, 'ERR_AGENT_UNKNOWN')
    ids = lineage(manifest, id)
  }
  return withRedisStore(ctx, (store) =>
    withAudit(ctx, async (audit) => {
      // A quarantine: every token of the agent, past and future, whichever authority mints it.
      const at = AGENT_QUARANTINED
      for (const a of ids) {
        await store.revokeAgent(a, at)
        audit.record(revoked(a === id ? { kind: 'agent', agentId: a } : { kind: 'descendant', agentId: a, of: id }, operator(ctx), 'cli'))
      }
      // Their certificates too (every one issued until now), in the store every authority
      // replica checks callers against: as the authority service's own revocation does.
      if (trustDomain !== undefined) {
        const certificates = store.certificateRevocations()
        const now = Date.now()
        for (const a of ids)
          if (isSpiffeRepresentable(a))
            await certificates.revokeIdentity(agentSpiffeId(trustDomain, a), now, now + IDENTITY_REVOCATION_KEEP_MS)
      }
      // `permanent`: a quarantine has no cut-off time (tokens minted later are rejected too).
      ctx.print(
        { revoked: { agents: ids, permanent: true } },
        `quarantined ${ids.join(', ')}: every token of theirs is rejected from now on`,
      )
      return EXIT.ok
    }),
  )
}

export const revokeCommands: CommandGroup = {
  name: 'revoke',
  summary: 'revoke a token (by jti) or an agent in the shared store (REDIS_URL)',
  subcommands: [
    {
      name: 'token',
      summary: 'revoke one token and its delegated descendants, by jti',
      args: 1,
      options: { ...STORE_OPTIONS, ...OPERATOR_OPTIONS },
      help: `Usage: agent-trust revoke token <jti>

Revokes the token with this jti, and every token exchanged from it (they carry it in their
chain), on every verifier that shares the store. Give the jti, never the token.

Options:
${STORE_HELP}
${OPERATOR_HELP}`,
      run: revokeToken,
    },
    {
      name: 'agent',
      summary: 'quarantine an agent and its declared children (every token, past and future)',
      args: 1,
      options: { ...STORE_OPTIONS, ...OPERATOR_OPTIONS, unlisted: { type: 'boolean' } },
      help: `Usage: agent-trust revoke agent <agent-id> [--unlisted]

Quarantines the agent and the agents the manifest declares as its children: every token of
theirs (as subject or actor), issued before or after, by any authority, is denied from the
next call on by every verifier sharing the store. The quarantine is permanent (kept a year
by the store); --json prints {"revoked": {"agents": [...], "permanent": true}}. Remove the
agent from the manifest too, so that no authority keeps minting for it. Every certificate
issued to them so far is revoked too, in the same store, for every authority-service
replica's peer check (not with --unlisted: the manifest names the trust domain).

Options:
  --unlisted            the agent is not in the manifest (spawned at run time)
${STORE_HELP}
${OPERATOR_HELP}`,
      run: revokeAgent,
    },
  ],
}
