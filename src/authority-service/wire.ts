/**
 * The wire format of the authority service: request schemas (pure, zod) and the error body.
 * Shared by the server and the client; statuses come from the one denial table (`http/denial.ts`).
 */
import { z } from 'zod'
import type { ErrorDetails } from '../errors.js'
import { hasUnprintable } from '../policy/printable.js'

/** Protocol version prefix of every path. */
export const API_PREFIX = '/v1'

export const PATHS = {
  jwks: '/v1/jwks',
  enroll: '/v1/certificates/enroll',
  renew: '/v1/certificates/renew',
  mint: '/v1/tokens/mint',
  mintForTool: '/v1/tokens/mint-for-tool',
  exchange: '/v1/tokens/exchange',
  spawn: '/v1/agents/spawn',
  retire: '/v1/agents/retire',
  revokeAgent: '/v1/revocations/agents',
  revokeToken: '/v1/revocations/tokens',
  revokeCertificate: '/v1/revocations/certificates',
  revokeIdentity: '/v1/revocations/identities',
  revocations: '/v1/revocations',
  trustChanges: '/v1/trust-changes',
  decideTrustChange: '/v1/trust-changes/decide',
  enrollmentTokens: '/v1/enrollment-tokens',
  /** The signing keys at the well-known location resource servers look for (same set as `jwks`). */
  wellKnownJwks: '/.well-known/jwks.json',
  /** RFC 8414 authorization server metadata. */
  wellKnownMetadata: '/.well-known/oauth-authorization-server',
} as const

const id = z.string().min(1).max(255)
const contextValue = z
  .string()
  .max(256)
  .refine((s) => !hasUnprintable(s), { message: 'must be plain text: no control, bidi or invisible characters' })
const context = z.strictObject({ session_id: contextValue, user_id: contextValue, task_id: contextValue })
const scopes = z.array(z.string().min(1).max(1100)).min(1).max(32)
const ttl = z.int().min(1).max(300).optional()
const thumbprint = z.string().max(64).optional()

export const MintBody = z.strictObject({
  subject: id.optional(),
  audience: id,
  scope: scopes,
  operation: z.enum(['read', 'write', 'execute']),
  context,
  ttlSeconds: ttl,
  delegationDepth: z.int().min(0).max(8).optional(),
  certificateThumbprint: thumbprint,
})

export const MintForToolBody = z.strictObject({
  subject: id.optional(),
  audience: id,
  tool: z.string().min(1).max(128),
  args: z.record(z.string(), z.unknown()).optional(),
  context,
  ttlSeconds: ttl,
  delegationDepth: z.int().min(0).max(8).optional(),
  certificateThumbprint: thumbprint,
})

export const ExchangeBody = z.strictObject({
  token: z.string().min(1).max(8192),
  holder: id.optional(),
  audience: id,
  scope: scopes.optional(),
  ttlSeconds: ttl,
  certificateThumbprint: thumbprint,
})

export const SpawnBody = z.strictObject({
  parent: id.optional(),
  // The authority validates the declaration itself (and reports escalations with their own codes).
  child: z.record(z.string(), z.unknown()),
})

export const RetireBody = z.strictObject({
  parent: id.optional(),
  agentId: id,
})

export const RevokeAgentBody = z.strictObject({ agentId: id })
export const RevokeIdentityBody = z.strictObject({ kind: z.enum(['agent', 'operator']), id })
export const RevokeTokenBody = z.strictObject({ jti: z.string().min(1).max(64) })
export const RevokeCertificateBody = z.strictObject({ serialNumber: z.string().regex(/^[0-9a-fA-F]{1,40}$/) })
/** Text a human reads when approving: plain characters only. */
const plainText = z
  .string()
  .max(500)
  .refine((s) => !hasUnprintable(s), { message: 'must be plain text: no control, bidi or invisible characters' })
export const TrustChangeBody = z.strictObject({ agentId: id, level: z.enum(['L0', 'L1', 'L2', 'L3']), reason: plainText.min(1) })
export const DecideBody = z.strictObject({ id: z.string().min(1).max(64), approved: z.boolean(), note: plainText.optional() })
export const EnrollmentTokenBody = z.strictObject({ agentId: id, ttlSeconds: z.int().min(60).max(86_400).optional() })
export const EnrollBody = z.strictObject({ token: z.string().min(16).max(256), csr: z.string().min(1).max(16_384) })
export const RenewBody = z.strictObject({ csr: z.string().min(1).max(16_384) })

export interface WireError {
  readonly code: string
  readonly message: string
  readonly details: ErrorDetails
}

/** Keep only identifier-like details (strings, numbers, booleans; bounded). */
export function cleanDetails(d: unknown): ErrorDetails {
  const out: Record<string, string | number | boolean> = {}
  if (typeof d !== 'object' || d === null) return out
  let n = 0
  for (const [k, v] of Object.entries(d)) {
    if (n++ >= 16 || k.length > 32) break
    if (typeof v === 'string') out[k] = v.slice(0, 256)
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = v
  }
  return out
}
