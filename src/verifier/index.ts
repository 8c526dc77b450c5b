/**
 * The verifier: runs inside the callee and decides, in this order,
 * cheapest first: shape and header, signature, claims, binding, revocation, replay,
 * authorization. Every denial is a coded error; the token never appears in one.
 */
import type { AuditLog } from '../audit/types.js'
import { discardAudit } from '../audit/types.js'
import { parseManifest, type Manifest, type ManifestInput } from '../config/manifest.js'
import { resolveMode, type EnforcementMode } from '../config/mode.js'
import {
  AgentRevoked,
  AgentTrustError,
  ConfigInvalid,
  ScopeDenied,
  StoreUnavailable,
  TokenAudience,
  TokenBinding,
  TokenExpired,
  TokenIssuer,
  TokenLifetime,
  TokenMissing,
  TokenNotYetValid,
  TokenReplayed,
  TokenRevoked,
  TrustLevelDenied,
} from '../errors.js'
import { hashArguments } from '../lib/hash.js'
import { optionProblem, parseOptions, withMethods } from '../lib/options.js'
import { z } from 'zod'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import type { ReplayRevocationStore, StoreCheck } from '../revocation/store.js'
import { agentsOf, assertCapabilityClaims, presenterOf, type CapabilityClaims } from '../policy/claims.js'
import { assertSignature, assertSignatureOffloaded, decodeToken } from '../tokens/jws.js'
import { minLevel, OPERATIONS, permitsOperation, type Operation, type TrustLevel } from '../policy/trust.js'
import { KeyRing, type TrustedIssuer } from './key-ring.js'

export type { TrustedIssuer } from './key-ring.js'
import {
  DEFAULT_CLOCK_TOLERANCE_SECONDS,
  MAX_AGENT_ID_LENGTH,
  MARKER_GRACE_SECONDS,
  MAX_CLOCK_TOLERANCE_SECONDS,
  MAX_TOKEN_LIFETIME_SECONDS,
} from '../policy/limits.js'
import { allowedEvent, refusedEvent, type AuditFields } from '../audit/events.js'

/** The authenticated peer of the connection (from its mTLS certificate), when known. */
export interface PeerIdentity {
  readonly agentId: string
  /** base64url SHA-256 of the peer certificate's DER (RFC 8705 `x5t#S256`). */
  readonly certificateThumbprint?: string
}

/** What the call needs. */
export interface Requirement {
  /** The exact scope this call requires (from the tool's template and arguments). */
  readonly scope: string
  /** The operation, which decides which trust levels may call. */
  readonly operation: Operation
  /** Tool name, for the audit record. */
  readonly tool?: string
  /** Tool arguments, hashed into the audit record (never stored raw). */
  readonly args?: unknown
  /** Audit action; default `tool_call`. */
  readonly action?: 'tool_call' | 'agent_call'
  /** The mTLS-authenticated caller, when the transport has one. */
  readonly peer?: PeerIdentity
}

export interface VerifiedCapability {
  readonly claims: CapabilityClaims
  /** The agent presenting the token (current actor, else `sub`). */
  readonly presenter: string
  /** Effective level: the token's, lowered by the local manifest's when there is one. */
  readonly trustLevel: TrustLevel
}

export interface VerifierOptions {
  /** This verifier's own id: tokens must carry exactly this `aud`. */
  readonly id: string
  /** Issuers whose keys are trusted. */
  readonly issuers: readonly TrustedIssuer[]
  /** Seconds of clock skew tolerated on `exp`/`nbf`/`iat`. Default 5, max 30. */
  readonly clockToleranceSeconds?: number
  /** Replay/revocation store. Default: a new in-memory store (one process). */
  readonly store?: ReplayRevocationStore
  /** Local manifest: the agent's level there also applies (the lower wins); unknown agents are denied. */
  readonly manifest?: Manifest | ManifestInput
  /** Where decisions are recorded. */
  readonly audit?: AuditLog
  /** `enforce` (default, or `AGENT_TRUST`), `audit` (log, never block) or `off`. */
  readonly mode?: EnforcementMode
  /** Deny tokens without `cnf` when a peer certificate is presented. Default false. */
  readonly requireCertificateBinding?: boolean
  /**
   * Check signatures on agent-trust's dedicated crypto thread rather than the event loop:
   * a thread hop of latency per call, in exchange for ECDSA running on another core while
   * the event loop serves other requests. Pays off for an HTTP server under concurrent load
   * with a core to spare (measured: 0.87-0.89x of unguarded MCP throughput against 0.66-0.70x
   * inline); costs throughput when every core is busy (stdio client and server on 2 cores).
   * Default false.
   */
  readonly cryptoOffload?: boolean
}

/** Result of {@link Verifier.authorize}: what happened, and whether it was enforced. */
export type Authorization =
  | { readonly allowed: true; readonly enforced: boolean; readonly capability?: VerifiedCapability }
  | { readonly allowed: false; readonly enforced: false; readonly error: AgentTrustError }

interface CoreOptions {
  readonly audience: string
  readonly consume: boolean
  readonly requirement?: Requirement
  readonly peer?: PeerIdentity
  /**
   * The token's own audience hands it back to the authority (token exchange). Step 4 is
   * about presentation *to* the audience, which already happened, so it does not apply;
   * the authority checks instead that the exchanging holder is the authenticated caller.
   */
  readonly holderRedeems?: boolean
}

/**
 * The verification pipeline shared by the verifier and the authority (which checks a token
 * before exchanging it). Stateless apart from its key ring and store.
 */
export class VerificationCore {
  readonly keys: KeyRing
  readonly store: ReplayRevocationStore
  readonly toleranceSeconds: number
  readonly #localLevels: ReadonlyMap<string, TrustLevel> | undefined
  readonly #requireBinding: boolean
  readonly #offload: boolean
  /** The store when it is the in-memory one with its own check: asked without a promise. */
  readonly #memoryStore: MemoryReplayRevocationStore | undefined

  constructor(options: {
    issuers: readonly TrustedIssuer[]
    store: ReplayRevocationStore
    clockToleranceSeconds?: number
    localLevels?: ReadonlyMap<string, TrustLevel>
    requireCertificateBinding?: boolean
    cryptoOffload?: boolean
  }) {
    const { clockToleranceSeconds = DEFAULT_CLOCK_TOLERANCE_SECONDS } = options
    if (!Number.isInteger(clockToleranceSeconds) || clockToleranceSeconds < 0 || clockToleranceSeconds > MAX_CLOCK_TOLERANCE_SECONDS) {
      // createVerifier and Authority.create check this with their schemas; refused here too, for any other caller.
      throw optionProblem('VerificationCore', ['clockToleranceSeconds'], `expected an integer from 0 to ${MAX_CLOCK_TOLERANCE_SECONDS}`)
    }
    this.keys = new KeyRing(options.issuers)
    this.store = options.store
    // Only the class's own check: a subclass that overrides it (to count, to fail) is asked its way.
    this.#memoryStore =
      options.store instanceof MemoryReplayRevocationStore && options.store.check === MemoryReplayRevocationStore.prototype.check
        ? options.store
        : undefined
    this.toleranceSeconds = clockToleranceSeconds
    this.#localLevels = options.localLevels
    this.#requireBinding = options.requireCertificateBinding ?? false
    this.#offload = options.cryptoOffload ?? false
  }

  async verify(token: unknown, o: CoreOptions): Promise<VerifiedCapability> {
    if (token === undefined || token === null || token === '') throw new TokenMissing()
    // 1. size, shape, header, kid
    const decoded = decodeToken(token)
    const resolving = this.keys.resolve(decoded.header.kid)
    const { issuer, key } = resolving instanceof Promise ? await resolving : resolving
    // 2. signature
    if (this.#offload) await assertSignatureOffloaded(decoded, key)
    else assertSignature(decoded, key)
    // 3. claims
    const c = decoded.payload
    assertCapabilityClaims(c)
    if (c.iss !== issuer) throw new TokenIssuer(undefined, { details: { claim: 'iss' } })
    if (c.aud !== o.audience) throw new TokenAudience(undefined, { details: { claim: 'aud' } })
    if (c.exp <= c.iat || c.nbf < c.iat || c.nbf >= c.exp || c.exp - c.iat > MAX_TOKEN_LIFETIME_SECONDS) {
      throw new TokenLifetime(undefined, { details: { claim: 'exp' } })
    }
    const now = Math.floor(Date.now() / 1000)
    const tol = this.toleranceSeconds
    if (c.nbf > now + tol) throw new TokenNotYetValid(undefined, { details: { claim: 'nbf' } })
    if (c.iat > now + tol) throw new TokenNotYetValid(undefined, { details: { claim: 'iat' } })
    if (now >= c.exp + tol) throw new TokenExpired(undefined, { details: { claim: 'exp', jti: c.jti } })
    // 4. binding
    const presenter = presenterOf(c)
    const peer = o.peer ?? o.requirement?.peer
    if (o.holderRedeems === true) {
      // exchange: see CoreOptions.holderRedeems
    } else if (peer !== undefined) {
      if (peer.agentId !== presenter)
        throw new TokenBinding("the token's presenter is not the authenticated peer", { details: { jti: c.jti } })
      const bound = c.cnf?.['x5t#S256']
      if (bound !== undefined && bound !== peer.certificateThumbprint) {
        throw new TokenBinding('the token is bound to another certificate', { details: { jti: c.jti } })
      }
      if (bound === undefined && this.#requireBinding)
        throw new TokenBinding('the token is not bound to a certificate', { details: { jti: c.jti } })
    } else if (c.cnf !== undefined) {
      throw new TokenBinding('the token is bound to a certificate but none was presented', { details: { jti: c.jti } })
    }
    // 5 + 6. revocation, then replay: one atomic store call
    const check: StoreCheck = {
      jti: c.jti,
      chain: c.chain ?? [],
      // The token's agents and their spawn ancestors: quarantining an ancestor refuses it in the same round trip.
      agents: c.act === undefined && c.anc === undefined ? [c.sub] : [...agentsOf(c), ...(c.anc ?? [])],
      iat: c.iat,
      forgetAtMs: (c.exp + MARKER_GRACE_SECONDS + 1) * 1000,
      consume: o.consume,
    }
    // The in-memory store answers in the same turn (its own check is synchronous, hence atomic).
    const verdict = this.#memoryStore !== undefined ? this.#memoryStore.checkSync(check) : await this.store.check(check)
    if (verdict === 'token-revoked') throw new TokenRevoked(undefined, { details: { jti: c.jti } })
    if (verdict === 'agent-revoked') throw new AgentRevoked(undefined, { details: { jti: c.jti, agentId: presenter } })
    if (verdict === 'replayed') throw new TokenReplayed(undefined, { details: { jti: c.jti } })
    // Anything but an explicit 'ok' (a store bug, a protocol mismatch) is a denial.
    if (verdict !== 'ok') throw new StoreUnavailable('the replay/revocation store gave no valid answer', { details: { jti: c.jti } })
    // 7. authorization
    let level: TrustLevel = c.trust_level
    if (this.#localLevels !== undefined) {
      // Every agent the token speaks for (the subject and each actor, the presenter last) is
      // held to this verifier's own manifest, and the lowest level wins: otherwise a principal
      // restricted here acts through a listed helper by exchanging a token to it.
      for (const agent of c.act === undefined ? [c.sub] : agentsOf(c)) {
        const local = this.#localLevels.get(agent)
        if (local === undefined)
          throw new TrustLevelDenied(
            agent === presenter
              ? "the presenting agent is not in this verifier's manifest"
              : "an agent the token acts for is not in this verifier's manifest",
            { details: { agentId: agent, jti: c.jti } },
          )
        level = minLevel(level, local)
      }
    }
    const req = o.requirement
    if (req !== undefined) {
      if (!permitsOperation(level, req.operation)) {
        throw new TrustLevelDenied(`trust level ${level} may not perform "${req.operation}" operations`, {
          details: { agentId: presenter, rule: req.operation, jti: c.jti },
        })
      }
      if (!c.scope.includes(req.scope))
        throw new ScopeDenied('the token does not carry the scope this call requires', {
          details: { scope: req.scope, jti: c.jti, agentId: presenter },
        })
    }
    return { claims: c, presenter, trustLevel: level }
  }
}

/**
 * A call without a requirement would skip authorization (step 7) and accept any valid token
 * for this audience: refused as a programming error before the token is read or consumed.
 */
function assertRequirement(requirement: Requirement): void {
  const r = requirement as Partial<Requirement> | null | undefined
  if (typeof r !== 'object' || r === null)
    throw new ConfigInvalid('verify/authorize need a requirement: { scope, operation } of the call being authorized', {
      details: { rule: 'requirement' },
    })
  if (typeof r.scope !== 'string' || r.scope.length === 0)
    throw new ConfigInvalid('requirement.scope must be the exact scope the call needs (a non-empty string)', {
      details: { rule: 'requirement.scope' },
    })
  if (!OPERATIONS.includes(r.operation as Operation))
    throw new ConfigInvalid('requirement.operation must be read, write or execute', { details: { rule: 'requirement.operation' } })
}

const jwksSource = z.custom<TrustedIssuer['jwks']>(
  (v) => typeof v === 'function' || (typeof v === 'object' && v !== null && Array.isArray((v as { keys?: unknown }).keys)),
  { message: 'must be a JWKS object ({ keys: [...] }) or a function returning one' },
)

/** {@link VerifierOptions}, checked once when the verifier is built. */
const VerifierOptionsSchema = z.strictObject({
  id: z.string().min(1).max(MAX_AGENT_ID_LENGTH),
  issuers: z
    .array(z.strictObject({ issuer: z.string().min(1).max(MAX_AGENT_ID_LENGTH), jwks: jwksSource }))
    .min(1, 'needs at least one trusted issuer'),
  clockToleranceSeconds: z.int().min(0).max(MAX_CLOCK_TOLERANCE_SECONDS).optional(),
  store: withMethods<ReplayRevocationStore>('check', 'revokeToken', 'revokeAgent').optional(),
  manifest: z.unknown().optional(),
  audit: withMethods<AuditLog>('record').optional(),
  mode: z.unknown().optional(),
  requireCertificateBinding: z.boolean().optional(),
  cryptoOffload: z.boolean().optional(),
})

/**
 * A verifier bound to one audience (its own id). Create it once, at start.
 *
 * @example
 * ```ts
 * const verifier = createVerifier({ id: 'agent-database-reader', issuers: [{ issuer: authority.id, jwks: () => authority.jwks() }] })
 * await verifier.verify(token, { scope: 'db:read:documents:namespace:user-123', operation: 'read' })
 * ```
 */
export class Verifier {
  readonly id: string
  readonly mode: EnforcementMode
  readonly core: VerificationCore
  readonly #audit: AuditLog

  constructor(input: VerifierOptions) {
    const options = parseOptions('createVerifier', VerifierOptionsSchema, input)
    this.id = options.id
    // An explicit mode is validated like the environment's: a typo must not weaken enforcement.
    this.mode = resolveMode(options.mode as EnforcementMode | undefined)
    let localLevels: Map<string, TrustLevel> | undefined
    if (options.manifest !== undefined) {
      const m = parseManifest(options.manifest as Manifest | ManifestInput)
      localLevels = new Map(m.agents.map((a) => [a.id, a.trustLevel]))
    }
    this.core = new VerificationCore({
      issuers: options.issuers,
      store: options.store ?? new MemoryReplayRevocationStore(),
      clockToleranceSeconds: options.clockToleranceSeconds,
      localLevels,
      requireCertificateBinding: options.requireCertificateBinding,
      cryptoOffload: options.cryptoOffload,
    })
    this.#audit = options.audit ?? discardAudit
  }

  get store(): ReplayRevocationStore {
    return this.core.store
  }

  /** Where this verifier records its decisions; adapters record their own pre-verification denials there too. */
  get audit(): AuditLog {
    return this.#audit
  }

  /**
   * Verify a token for one call and consume it. Resolves with the capability, or rejects
   * with a coded {@link AgentTrustError}. Ignores `mode`: see {@link authorize}.
   */
  async verify(token: unknown, requirement: Requirement): Promise<VerifiedCapability> {
    assertRequirement(requirement)
    return this.#verifyAndRecord(token, requirement)
  }

  async #verifyAndRecord(token: unknown, requirement: Requirement): Promise<VerifiedCapability> {
    try {
      // A log set to deny while its trail cannot be written: refused before the token is consumed.
      this.#audit.admit?.()
      const cap = await this.core.verify(token, { audience: this.id, consume: true, requirement })
      this.#record(requirement, 'allow', cap, undefined)
      return cap
    } catch (e) {
      const err = toAgentTrustError(e)
      this.#record(requirement, 'deny', undefined, err)
      throw err
    }
  }

  /**
   * What adapters call: {@link verify} under the enforcement mode. `enforce` rejects;
   * `audit` resolves `{allowed: false}` after recording the denial (the caller proceeds);
   * `off` allows without checking.
   */
  async authorize(token: unknown, requirement: Requirement): Promise<Authorization> {
    assertRequirement(requirement)
    if (this.mode === 'off') return { allowed: true, enforced: false }
    if (this.mode === 'enforce') return { allowed: true, enforced: true, capability: await this.#verifyAndRecord(token, requirement) }
    try {
      return { allowed: true, enforced: false, capability: await this.#verifyAndRecord(token, requirement) }
    } catch (e) {
      return { allowed: false, enforced: false, error: toAgentTrustError(e) }
    }
  }

  #record(req: Requirement, decision: 'allow' | 'deny', cap: VerifiedCapability | undefined, err: AgentTrustError | undefined): void {
    // No log, no event: spare the hot path the argument hash.
    if (this.#audit === discardAudit) return
    const c = cap?.claims
    const fields: AuditFields = {
      // A denial after the token verified still names who presented it.
      origin: cap?.presenter ?? (typeof err?.details.agentId === 'string' ? err.details.agentId : req.peer?.agentId),
      destination: this.id,
      capability: [req.scope],
      tool: req.tool,
      jti: c?.jti ?? (typeof err?.details.jti === 'string' ? err.details.jti : undefined),
      trustLevel: cap?.trustLevel,
      context: c?.context,
      chain: c?.chain,
      argsHash: hashArguments(req.args),
      enforced: this.mode === 'enforce',
    }
    const action = req.action ?? 'tool_call'
    this.#audit.record(decision === 'allow' ? allowedEvent(action, fields) : refusedEvent(action, err?.code ?? 'ERR_GENERIC', fields))
  }
}

export function createVerifier(options: VerifierOptions): Verifier {
  return new Verifier(options)
}

/** Any failure inside verification is a denial: unknown errors become ERR_GENERIC with a cause. */
export function toAgentTrustError(e: unknown): AgentTrustError {
  if (e instanceof AgentTrustError) return e
  return new AgentTrustError('verification failed unexpectedly; the call was denied', { cause: e })
}
