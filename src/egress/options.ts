/**
 * The egress factories' options, checked once when the guard, connector or agent is built.
 * `connect` (node TLS options) and `agentOptions` (undici `Agent` options) pass through to
 * node and undici as documented, except the keys that would route a socket around the
 * checks (a custom lookup, a socket path, a fixed host or port, a connector factory).
 */
import { z } from 'zod'
import type { AuditLog } from '../audit/types.js'
import { fn, withMethods } from '../lib/options.js'
import { TRUST_LEVELS, type TrustLevel } from '../policy/trust.js'

export interface ResolvedAddress {
  readonly address: string
  readonly family?: number
}

/**
 * Resolves a host name to every address the socket may use. Default: the system resolver
 * (`dns.lookup`, all addresses). Inject one to play DNS answers in tests or to use a
 * DNS-over-HTTPS client.
 */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>
import { AgentCapabilityOptionsSchema } from './agent-call.js'

const bypass = (keys: readonly string[]) => (o: Record<string, unknown>, ctx: z.core.$RefinementCtx<Record<string, unknown>>) => {
  for (const k of keys)
    if (o[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: 'would bypass the egress checks and is not accepted' })
}

export const EgressGuardShape = {
  agentId: z.string().min(1).max(255),
  trustLevel: z.union([z.enum(TRUST_LEVELS as [TrustLevel, ...TrustLevel[]]), fn<() => TrustLevel>()], {
    error: `expected one of ${TRUST_LEVELS.join(', ')} or a function returning one`,
  }),
  egress: z.array(z.string()).readonly(),
  audit: withMethods<AuditLog>('record').optional(),
  // The mode is checked by resolveMode, like the environment's.
  mode: z.string().optional(),
}

const connect = z
  .looseObject({})
  .superRefine(bypass(['lookup', 'socketPath', 'path', 'host', 'port']))
  .optional()

export const EgressConnectorShape = {
  ...EgressGuardShape,
  resolver: fn<Resolver>().optional(),
  connect,
}

export const EgressGuardOptionsSchema = z.strictObject(EgressGuardShape)
export const EgressConnectorOptionsSchema = z.strictObject(EgressConnectorShape)
export const EgressAgentOptionsSchema = z.strictObject({
  ...EgressConnectorShape,
  maxRedirections: z.int().min(0).max(20).optional(),
  agentOptions: z
    .looseObject({})
    .superRefine(bypass(['connect', 'factory', 'socketPath']))
    .optional(),
  capabilities: AgentCapabilityOptionsSchema.optional(),
})
