/**
 * agent-trust: zero-trust for multi-agent AI systems.
 *
 * Root entry: the kernel (authority, verifier, scopes, trust levels, keys, manifest, errors,
 * in-memory store, audit types). It never imports undici, ioredis, the MCP SDK or LangChain;
 * those live at `agent-trust/egress`, `agent-trust/revocation/redis`, `agent-trust/mcp`,
 * `agent-trust/langchain`.
 *
 * @module agent-trust
 */
export {
  AgentRevoked,
  AgentTrustError,
  AgentUnknown,
  AuditTampered,
  FileUnreadable,
  KeyNotFound,
  KeyStoreNotEmpty,
  UsageInvalid,
  AuditUnavailable,
  AuthorityUnavailable,
  CertificateRequestDenied,
  ConfigInvalid,
  DelegationDepth,
  DependencyMissing,
  EgressDenied,
  ERROR_CATALOG,
  ERROR_CLASSES,
  errorFromCode,
  isAgentTrustError,
  KeyInvalid,
  KeyStoreInsecure,
  PeerForbidden,
  PeerUnauthenticated,
  RequestInvalid,
  ScopeDenied,
  ScopeEscalation,
  ScopeInvalid,
  SpawnDenied,
  SpawnEscalation,
  StoreUnavailable,
  TokenAlgorithm,
  TokenAudience,
  TokenBinding,
  TokenClaims,
  TokenExpired,
  TokenIssuer,
  TokenKeyUnknown,
  TokenLifetime,
  TokenMalformed,
  TokenMissing,
  TokenNotYetValid,
  TokenReplayed,
  TokenRevoked,
  TokenSignature,
  ToolUndeclared,
  TrustChangeDenied,
  TrustLevelDenied,
} from './errors.js'
export type { AgentTrustErrorCode, AgentTrustErrorOptions, ErrorDetails } from './errors.js'

export {
  assertExactScope,
  assertScopePattern,
  compileScopeTemplate,
  covers,
  grantsCover,
  isExactScope,
  isScopePattern,
  isScopeSegment,
  isSubset,
} from './policy/scopes.js'
export type { ScopeTemplate } from './policy/scopes.js'

export {
  egressMethods,
  isTrustLevel,
  levelRank,
  mayHoldTokens,
  mayRedelegate,
  maySpawn,
  minLevel,
  OPERATIONS,
  permitsOperation,
  TRUST_LEVELS,
} from './policy/trust.js'
export type { Operation, TokenTrustLevel, TrustLevel } from './policy/trust.js'

export { AgentSchema, loadManifestFile, ManifestSchema, parseManifest, ToolDeclarationSchema } from './config/manifest.js'
export { resolveTool } from './config/tools.js'
export type { ResolvedTool } from './config/tools.js'
export type { AgentDeclaration, AgentDeclarationInput, Manifest, ManifestInput, ToolDeclaration } from './config/manifest.js'
export { resolveMode } from './config/mode.js'
export type { EnforcementMode } from './config/mode.js'

export { TOKEN_ALG, TOKEN_TYPE } from './policy/claims.js'
export {
  DEFAULT_CLOCK_TOLERANCE_SECONDS,
  DEFAULT_TOKEN_LIFETIME_SECONDS,
  MAX_AGENT_ID_LENGTH,
  MAX_CLOCK_TOLERANCE_SECONDS,
  MAX_CONTEXT_VALUE_LENGTH,
  MAX_DELEGATION_CHAIN,
  MAX_SCOPE_SEGMENTS,
  MAX_SCOPES_PER_TOKEN,
  MAX_SEGMENT_LENGTH,
  MAX_TOKEN_BYTES,
  MAX_TOKEN_LIFETIME_SECONDS,
} from './policy/limits.js'
export type { ActorClaim, AuditContext, CapabilityClaims } from './policy/claims.js'

export { generateSigningKey, importPrivateKey, importPublicKey, KeySet, publicJwkOf } from './keys/index.js'
export type { JSONWebKeySet, JwksSource, JWK, KeySetOptions, SigningKeyRecord } from './keys/index.js'
export { defaultKeyFile, FileKeyStore, MemoryKeyStore } from './keys/store.js'
export type { FileKeyStoreOptions, KeyStore } from './keys/store.js'
export { createKeyManager } from './keys/rotation.js'
export type { KeyManager, KeyManagerOptions } from './keys/rotation.js'
export { createJwksHandler, jwksFetchHandler, jwksNodeHandler } from './keys/jwks-handler.js'
export type { JwksHandlerOptions, JwksProvider } from './keys/jwks-handler.js'

export { MemoryReplayRevocationStore } from './revocation/memory.js'
export { AGENT_QUARANTINED, RETIRED_TOMBSTONE_MS } from './revocation/store.js'
export type {
  LineageStore,
  ReplayRevocationStore,
  SpawnedAgentRecord,
  SpawnOutcome,
  SpawnVerdict,
  StoreCheck,
  StoreVerdict,
} from './revocation/store.js'

export { discardAudit, MemoryAuditLog } from './audit/types.js'
export type { AuditAction, AuditDecision, AuditEventInput, AuditLog } from './audit/types.js'

export { Authority } from './authority/index.js'
export { FileTrustChangeStore, MemoryTrustChangeStore } from './authority/trust-changes.js'
export type { FileTrustChangeStoreOptions } from './authority/trust-changes.js'
export type {
  ApprovalDecision,
  AuthorityOptions,
  CapabilityIssuer,
  ExchangeRequest,
  MintRequest,
  RetireRequest,
  SpawnRequest,
  ToolMintRequest,
  TrustChangeApprover,
  TrustChangeDecisionInput,
  TrustChangePrecondition,
  TrustChangeRequest,
  TrustChangeStatus,
  TrustChangeStore,
} from './authority/types.js'

export { createVerifier, Verifier } from './verifier/index.js'
export { remoteJwks } from './keys/remote-jwks.js'
export type { RefreshableJwksSource, RemoteJwksOptions } from './keys/remote-jwks.js'
export type { Authorization, PeerIdentity, Requirement, TrustedIssuer, VerifiedCapability, VerifierOptions } from './verifier/index.js'
