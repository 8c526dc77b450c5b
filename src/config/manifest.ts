/**
 * The manifest: which agents exist, their trust level, their grants, the tools they serve
 * and the destinations they may reach. Validated once at start; any problem throws one
 * `ERR_CONFIG_INVALID` listing every issue with its path, never echoing a value.
 */
import { z } from 'zod'
import { tryParseDestination } from '../policy/destination.js'
import { ConfigInvalid } from '../errors.js'
import { readTrustFileSync } from './trust-file.js'
import { jsonSyntaxPosition } from '../lib/json-position.js'
import { compileScopeTemplate, isScopePattern, isSubset } from '../policy/scopes.js'
import { isAgentId } from '../policy/claims.js'
import { levelRank, type Operation, type TrustLevel } from '../policy/trust.js'
import {
  DEFAULT_CLOCK_TOLERANCE_SECONDS,
  DEFAULT_TOKEN_LIFETIME_SECONDS,
  MAX_CLOCK_TOLERANCE_SECONDS,
  MAX_DELEGATION_CHAIN,
  MAX_MANIFEST_LIST_LENGTH,
  MAX_TOKEN_LIFETIME_SECONDS,
  MAX_TOOL_NAME_LENGTH,
} from '../policy/limits.js'

const agentId = z.string().refine(isAgentId, { message: 'must be an agent id: ASCII letters, digits and . _ @ : / - (1-255 chars)' })
const scopePattern = z
  .string()
  .refine(isScopePattern, { message: 'is not a valid scope pattern (segments of [A-Za-z0-9._@/+-] or *, joined by :)' })
// The egress guard's own parser: a bad entry fails at start.
const egressDestination = z
  .string()
  .min(1)
  .max(512)
  .refine((e) => tryParseDestination(e).ok, {
    message: 'is not a valid egress destination: scheme://host[:port] (http/https, optional "*." wildcard, optional " internal")',
  })
const scopeTemplate = z.string().refine(
  (s) => {
    try {
      compileScopeTemplate(s)
      return true
    } catch {
      return false
    }
  },
  { message: 'is not a valid scope template (literal segments or {argName})' },
)

export const ToolDeclarationSchema = z.strictObject({
  /** Tool name as the server or toolkit exposes it. */
  name: z.string().min(1).max(MAX_TOOL_NAME_LENGTH),
  /** What the tool does: decides which trust levels may call it. */
  operation: z.enum(['read', 'write', 'execute']),
  /** Required scope; `{arg}` segments take the call's argument values. Default `tool:<agent>:<name>`. */
  scope: scopeTemplate.optional(),
  /** Pinned hash of the tool's definition (gateway rug-pull protection). */
  definitionHash: z
    .string()
    .regex(/^[A-Za-z0-9_-]{43}$/)
    .optional(),
})

export const AgentSchema = z.strictObject({
  id: agentId,
  trustLevel: z.enum(['L0', 'L1', 'L2', 'L3']),
  /** Scope patterns the agent may obtain tokens for. */
  grants: z.array(scopePattern).max(MAX_MANIFEST_LIST_LENGTH).default([]),
  /** Tools this agent serves (when it is a tool server). */
  tools: z.array(ToolDeclarationSchema).max(1024).default([]),
  /** Destinations its HTTP tool may reach: `https://host[:port]`, `https://*.domain`, `http://name:port internal`. */
  egress: z.array(egressDestination).max(MAX_MANIFEST_LIST_LENGTH).default([]),
  /** Origin serving this agent's agent-to-agent HTTP endpoint (tokens go only there). */
  origin: z.string().url().optional(),
  /** Max `delegation_depth` of tokens minted for it (0 = its tokens cannot be re-delegated). */
  maxDelegationDepth: z.int().min(0).max(MAX_DELEGATION_CHAIN).default(0),
  /** The L3 agent that spawned it. */
  parent: agentId.optional(),
})

export const ManifestSchema = z.strictObject({
  version: z.literal(1).default(1),
  authority: z
    .strictObject({
      /** The `iss` of every token. */
      id: agentId.default('agent-trust-authority'),
      /** Default token lifetime, seconds (max 300). */
      tokenTtlSeconds: z.int().min(1).max(MAX_TOKEN_LIFETIME_SECONDS).default(DEFAULT_TOKEN_LIFETIME_SECONDS),
      /** Clock tolerance, seconds (max 30). */
      clockToleranceSeconds: z.int().min(0).max(MAX_CLOCK_TOLERANCE_SECONDS).default(DEFAULT_CLOCK_TOLERANCE_SECONDS),
      /** Signing key rotation interval, hours. */
      keyRotationHours: z
        .number()
        .positive()
        .max(24 * 365)
        .default(24),
    })
    .prefault({}),
  /** SPIFFE trust domain for agent certificates. */
  trustDomain: z
    .string()
    .regex(/^[a-z0-9.-]{1,255}$/)
    .default('agent-trust.local'),
  agents: z.array(AgentSchema).max(10_000),
})

export type ToolDeclaration = z.infer<typeof ToolDeclarationSchema>
export type AgentDeclaration = z.infer<typeof AgentSchema>
export type AgentDeclarationInput = z.input<typeof AgentSchema>
export type Manifest = z.infer<typeof ManifestSchema>
export type ManifestInput = z.input<typeof ManifestSchema>

/** Rules across agents that a per-field schema cannot see. */
function crossCheck(m: Manifest, ctx: z.RefinementCtx): void {
  const byId = new Map<string, AgentDeclaration>()
  m.agents.forEach((a, i) => {
    if (byId.has(a.id)) ctx.addIssue({ code: 'custom', path: ['agents', i, 'id'], message: 'duplicates another agent id' })
    byId.set(a.id, a)
  })
  m.agents.forEach((a, i) => {
    const names = new Set<string>()
    a.tools.forEach((t, j) => {
      if (names.has(t.name))
        ctx.addIssue({ code: 'custom', path: ['agents', i, 'tools', j, 'name'], message: 'duplicates another tool of this agent' })
      names.add(t.name)
    })
    if (a.parent === undefined) return
    const p = byId.get(a.parent)
    if (p === undefined) return ctx.addIssue({ code: 'custom', path: ['agents', i, 'parent'], message: 'names no agent in the manifest' })
    if (p.trustLevel !== 'L3') ctx.addIssue({ code: 'custom', path: ['agents', i, 'parent'], message: 'only an L3 agent may be a parent' })
    if (levelRank(a.trustLevel) > levelRank(p.trustLevel))
      ctx.addIssue({ code: 'custom', path: ['agents', i, 'trustLevel'], message: "exceeds the parent's level" })
    if (!isSubset(a.grants, p.grants))
      ctx.addIssue({ code: 'custom', path: ['agents', i, 'grants'], message: "are not a subset of the parent's grants" })
    if (a.maxDelegationDepth >= p.maxDelegationDepth && a.maxDelegationDepth > 0) {
      ctx.addIssue({ code: 'custom', path: ['agents', i, 'maxDelegationDepth'], message: "must be below the parent's" })
    }
  })
}

const ValidatedManifest = ManifestSchema.superRefine(crossCheck)

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k])
  }
  return v
}

/** Validate and freeze a manifest. Throws one `ERR_CONFIG_INVALID` listing every problem. */
export function parseManifest(input: unknown): Manifest {
  const r = ValidatedManifest.safeParse(input, { reportInput: false })
  if (!r.success) {
    throw new ConfigInvalid(`invalid agent-trust manifest:\n${z.prettifyError(r.error)}`, {
      details: { issues: r.error.issues.length },
    })
  }
  return deepFreeze(r.data)
}

/** Load `agent-trust.config.json` (or another JSON path) and validate it. */
export function loadManifestFile(path = 'agent-trust.config.json'): Manifest {
  let text: string
  try {
    text = readTrustFileSync(path, 'manifest file')
  } catch (cause) {
    if (cause instanceof ConfigInvalid) throw cause
    throw new ConfigInvalid(`cannot read the manifest file "${path}"`, { cause })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    // The parser's message can quote file content; keep it out: where and what, in our words.
    const at = jsonSyntaxPosition(text)
    throw new ConfigInvalid(
      `the manifest file "${path}" is not valid JSON${at === undefined ? '' : `: ${at.problem} at line ${at.line}, column ${at.column}`}`,
      { details: { rule: 'json', ...(at === undefined ? {} : { line: at.line, column: at.column }) } },
    )
  }
  return parseManifest(json)
}

export type { Operation, TrustLevel }
