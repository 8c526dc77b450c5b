/**
 * The error catalogue: one entry per stable error code, with the HTTP status every
 * agent-trust HTTP surface answers it with, and the "when" and "fix" texts of the README
 * table (generated from this file by `npm run docs:errors`). The error classes are built
 * from it in `errors.ts`.
 */

/**
 * One row of the catalogue. `status` is the HTTP answer every agent-trust HTTP surface gives
 * for the code (authority service, agent endpoints, MCP Streamable HTTP). `challenge` is the
 * RFC 6750 section 3.1 error a `WWW-Authenticate: Bearer` challenge carries: `invalid_token`
 * for a token that does not verify, `insufficient_scope` for a valid token without what the
 * call needs, `none` for a request without a token (RFC 6750: no error code then).
 */
export interface CatalogEntry {
  readonly name: string
  readonly status: 400 | 401 | 403 | 500 | 503
  readonly challenge?: 'invalid_token' | 'insufficient_scope' | 'none'
  readonly when: string
  readonly fix: string
}

/** The catalogue: one entry per reason, with the text of the README table. */
export const ERROR_CATALOG = {
  ERR_GENERIC: {
    name: 'AgentTrustError',
    status: 500,
    when: 'An unexpected internal failure (the call is denied).',
    fix: 'Report it with the `cause`; the call was denied, nothing was allowed.',
  },
  ERR_CONFIG_INVALID: {
    name: 'ConfigInvalid',
    status: 500,
    when: 'The manifest or options failed validation at start.',
    fix: 'Read the listed paths and correct each one; values are never echoed.',
  },
  ERR_TOKEN_MISSING: {
    name: 'TokenMissing',
    status: 401,
    challenge: 'none',
    when: 'A guarded call arrived without a capability token.',
    fix: 'Ask the authority for a token for this call and attach it (the adapters do this for you).',
  },
  ERR_TOKEN_MALFORMED: {
    name: 'TokenMalformed',
    status: 401,
    challenge: 'invalid_token',
    when: 'Not a compact JWS of the allowed shape: size over 8 KiB, bad base64url, header members other than alg/typ/kid, wrong `typ`, payload not a JSON object.',
    fix: 'Send the token exactly as the authority issued it.',
  },
  ERR_TOKEN_ALG: {
    name: 'TokenAlgorithm',
    status: 401,
    challenge: 'invalid_token',
    when: 'The header `alg` is not ES256 (none, HS256, RS256, ...).',
    fix: 'Only ES256 tokens from the authority are accepted.',
  },
  ERR_TOKEN_KEY_UNKNOWN: {
    name: 'TokenKeyUnknown',
    status: 401,
    challenge: 'invalid_token',
    when: 'The header `kid` names no key of a trusted issuer (never trusted, rotated out, or revoked).',
    fix: "Check that the verifier trusts the authority's JWKS and that the key was not revoked; mint a fresh token.",
  },
  ERR_TOKEN_SIGNATURE: {
    name: 'TokenSignature',
    status: 401,
    challenge: 'invalid_token',
    when: 'The ES256 signature does not verify.',
    fix: 'The token was altered or signed by someone else; mint a fresh one.',
  },
  ERR_TOKEN_CLAIMS: {
    name: 'TokenClaims',
    status: 401,
    challenge: 'invalid_token',
    when: 'A required claim is missing, has the wrong type, an unknown claim is present, or a scope is not well-formed.',
    fix: 'Only tokens minted by the authority are accepted; see the `claim` field.',
  },
  ERR_TOKEN_EXPIRED: {
    name: 'TokenExpired',
    status: 401,
    challenge: 'invalid_token',
    when: '`exp` is past (beyond the clock tolerance).',
    fix: 'Mint a fresh token per call; check the clocks of both hosts.',
  },
  ERR_TOKEN_NOT_YET_VALID: {
    name: 'TokenNotYetValid',
    status: 401,
    challenge: 'invalid_token',
    when: '`nbf` or `iat` is in the future (beyond the clock tolerance).',
    fix: 'Synchronise the clocks (NTP) of the authority and the verifier.',
  },
  ERR_TOKEN_AUDIENCE: {
    name: 'TokenAudience',
    status: 401,
    challenge: 'invalid_token',
    when: "`aud` is not exactly this verifier's id (an array is never accepted).",
    fix: 'Mint the token for this server or agent as its audience.',
  },
  ERR_TOKEN_ISSUER: {
    name: 'TokenIssuer',
    status: 401,
    challenge: 'invalid_token',
    when: '`iss` is not the trusted issuer that owns the signing key.',
    fix: "Add the authority to the verifier's trusted issuers, or use the right authority.",
  },
  ERR_TOKEN_LIFETIME: {
    name: 'TokenLifetime',
    status: 401,
    challenge: 'invalid_token',
    when: '`exp - iat` exceeds 300 seconds, or the time claims are out of order.',
    fix: 'Capability tokens live at most 5 minutes; lower the TTL.',
  },
  ERR_TOKEN_BINDING: {
    name: 'TokenBinding',
    status: 401,
    challenge: 'invalid_token',
    when: 'The token is bound (`cnf`) to another certificate, or its presenter is not the authenticated mTLS peer.',
    fix: 'Each agent must use its own tokens over its own mTLS connection.',
  },
  ERR_PEER_UNAUTHENTICATED: {
    name: 'PeerUnauthenticated',
    status: 401,
    when: 'The connection has no valid certificate from the trust domain (none, another CA, expired, revoked, a CA certificate, not exactly one SPIFFE URI SAN), or an enrollment token is unknown, used or expired.',
    fix: 'Give the peer a current certificate issued by the agent-trust CA for its own id (enroll or renew); see `details.rule`.',
  },
  ERR_PEER_FORBIDDEN: {
    name: 'PeerForbidden',
    status: 403,
    when: 'An authenticated peer called an endpoint its identity may not use (an agent on an operator endpoint, an operator minting tokens), or asked to act as another agent.',
    fix: 'Use an operator certificate for revocation, trust decisions and enrollment tokens; agents mint for themselves.',
  },
  ERR_CSR_DENIED: {
    name: 'CertificateRequestDenied',
    status: 403,
    when: 'A certificate signing request is malformed, its signature does not verify, its key is not P-256, or it asks for an identity other than the authenticated one.',
    fix: 'Generate the key where the agent runs and request exactly `spiffe://<trust-domain>/agent/<own id>` as the only URI SAN.',
  },
  ERR_AUTHORITY_UNAVAILABLE: {
    name: 'AuthorityUnavailable',
    status: 503,
    when: 'The remote authority did not answer (connection refused, TLS failure, timeout) on any configured URL.',
    fix: "Check the authority service and the client's TLS credentials; calls are denied until it answers.",
  },
  ERR_REQUEST_INVALID: {
    name: 'RequestInvalid',
    status: 400,
    when: 'A request to the authority service is not JSON of the expected shape, is too large, or names an unknown endpoint.',
    fix: 'Use the agent-trust authority client, or send the documented request body.',
  },
  ERR_TOKEN_REVOKED: {
    name: 'TokenRevoked',
    status: 401,
    challenge: 'invalid_token',
    when: 'The token or one of its delegation ancestors (`chain`) was revoked.',
    fix: 'Revocation is final; obtain a new capability through the authority.',
  },
  ERR_AGENT_REVOKED: {
    name: 'AgentRevoked',
    status: 401,
    challenge: 'invalid_token',
    when: 'The subject or an actor in the chain was revoked (all tokens issued up to that time are dead; no new ones are minted).',
    fix: 'The agent is quarantined; an operator must re-register it.',
  },
  ERR_TOKEN_REPLAYED: {
    name: 'TokenReplayed',
    status: 401,
    challenge: 'invalid_token',
    when: "The token's `jti` was already used (on any instance sharing the store).",
    fix: 'Tokens are single use: mint a fresh token for every call.',
  },
  ERR_TRUST_LEVEL: {
    name: 'TrustLevelDenied',
    status: 403,
    challenge: 'insufficient_scope',
    when: "The agent's trust level does not permit the operation (L0 anything, L1 write/execute, L2 spawn, ...).",
    fix: "Use a tool within the agent's level, or request a trust change (needs human approval).",
  },
  ERR_SCOPE_DENIED: {
    name: 'ScopeDenied',
    status: 403,
    challenge: 'insufficient_scope',
    when: "The token does not carry the exact scope the call requires, or the agent's grants do not cover it.",
    fix: 'Request a token for exactly this tool and these arguments; grant the scope in the manifest if it is legitimate.',
  },
  ERR_SCOPE_INVALID: {
    name: 'ScopeInvalid',
    status: 400,
    when: 'A scope or scope pattern breaks the grammar, or a tool argument cannot form a scope segment.',
    fix: 'Segments are 1-64 chars of [A-Za-z0-9._@/+-] or `*`, at most 16, joined by `:`.',
  },
  ERR_SCOPE_ESCALATION: {
    name: 'ScopeEscalation',
    status: 403,
    when: 'Exchange or spawn asked for a scope the parent capability does not hold.',
    fix: 'Delegate only a subset of what the delegator holds.',
  },
  ERR_DELEGATION_DEPTH: {
    name: 'DelegationDepth',
    status: 403,
    when: "The capability may not be re-delegated further (`delegation_depth` is 0), or a child asked for a depth not below its parent's.",
    fix: 'Ask the authority directly, or raise the depth in the manifest.',
  },
  ERR_SPAWN_DENIED: {
    name: 'SpawnDenied',
    status: 403,
    when: 'The parent may not spawn (not L3, unknown, revoked) or the child id is taken or invalid.',
    fix: 'Only L3 agents spawn; choose a new child id.',
  },
  ERR_SPAWN_ESCALATION: {
    name: 'SpawnEscalation',
    status: 403,
    when: 'The child would have a higher trust level or wider egress than its parent.',
    fix: "A child gets at most its parent's level and destinations.",
  },
  ERR_AGENT_UNKNOWN: {
    name: 'AgentUnknown',
    status: 403,
    when: 'The agent or audience is not in the manifest.',
    fix: 'Register the agent in the manifest (or spawn it through an L3 parent).',
  },
  ERR_TOOL_UNDECLARED: {
    name: 'ToolUndeclared',
    status: 403,
    when: 'A guarded server was asked for a tool the manifest does not declare, or whose definition changed since it was pinned.',
    fix: 'Declare the tool in the manifest; approve a changed definition after reviewing it.',
  },
  ERR_STORE_UNAVAILABLE: {
    name: 'StoreUnavailable',
    status: 503,
    when: 'The replay/revocation store (Redis) did not answer within its bound, or (with `replicas`) fewer replicas than required acknowledged a write (`details.rule: not-replicated`).',
    fix: 'Check Redis (and its replication link for `not-replicated`); calls are denied until it answers and recover by themselves.',
  },
  ERR_STORE_BUSY: {
    name: 'StoreBusy',
    status: 503,
    when: 'The replay/revocation store had too many calls in flight and queued; this call was refused before anything was sent (the token was not consumed).',
    fix: 'Retry the same call after `Retry-After`; raise `maxInFlight`/`maxQueued` or add capacity if it persists.',
  },
  ERR_EGRESS_DENIED: {
    name: 'EgressDenied',
    status: 403,
    when: "An outbound HTTP request (or a redirect hop, or a resolved address) is outside the agent's declared destinations.",
    fix: "Declare the destination in the agent's `egress` list if it is legitimate.",
  },
  ERR_SANDBOX_UNAVAILABLE: {
    name: 'SandboxUnavailable',
    status: 503,
    when: 'A network sandbox could not be set up: not Linux, not root (no CAP_NET_ADMIN), `nft` or `ip` missing, or the kernel refused a step.',
    fix: 'Run as root (or with CAP_NET_ADMIN) on Linux with nftables and iproute2 installed (`apt-get install nftables iproute2`).',
  },
  ERR_TRUST_CHANGE_DENIED: {
    name: 'TrustChangeDenied',
    status: 403,
    when: 'A trust-level change was refused by the approver or is invalid.',
    fix: 'Trust changes take effect only after a human approves them.',
  },
  ERR_KEY_INVALID: {
    name: 'KeyInvalid',
    status: 500,
    when: 'A supplied signing or verification key is not a usable P-256 key.',
    fix: 'Supply an EC P-256 JWK (private with `d` for signing) with a `kid`.',
  },
  ERR_KEY_STORE_INSECURE: {
    name: 'KeyStoreInsecure',
    status: 500,
    when: 'The signing-key file is not a regular file or is readable or writable by group or others.',
    fix: 'Restrict it to its owner (`chmod 600 <file>`); private keys are never loaded from a file others can read.',
  },
  ERR_DEPENDENCY_MISSING: {
    name: 'DependencyMissing',
    status: 500,
    when: 'A subpath or command was loaded without the optional peer dependency it needs (`details.packages`).',
    fix: 'Install the named package next to agent-trust (`npm install <package>`, as the message says).',
  },
  ERR_AUDIT_TAMPERED: {
    name: 'AuditTampered',
    status: 500,
    when: "The audit trail's hash chain does not verify.",
    fix: 'Investigate the reported first broken event; restore the trail from a copy.',
  },
  ERR_USAGE: {
    name: 'UsageInvalid',
    status: 400,
    when: 'The `agent-trust` command line is wrong: an unknown command or option, a missing or extra argument, a malformed value (exit 2).',
    fix: 'The message names what to change; `agent-trust <command> <subcommand> --help` lists the options.',
  },
  ERR_FILE_UNREADABLE: {
    name: 'FileUnreadable',
    status: 500,
    when: 'A file named on the `agent-trust` command line does not exist, is a directory or may not be read (exit 4).',
    fix: 'Check the path and its permissions.',
  },
  ERR_KEY_NOT_FOUND: {
    name: 'KeyNotFound',
    status: 500,
    when: 'The key store holds no key with this kid, or no key at all.',
    fix: 'List the published kids with `agent-trust keys jwks`; create a first key with `agent-trust keys generate`.',
  },
  ERR_KEY_STORE_NOT_EMPTY: {
    name: 'KeyStoreNotEmpty',
    status: 500,
    when: '`agent-trust keys generate` found keys in the store (nothing was changed).',
    fix: 'Add a key with `agent-trust keys rotate`; `--force` replaces every key and invalidates every outstanding token.',
  },
  ERR_AUDIT_UNAVAILABLE: {
    name: 'AuditUnavailable',
    status: 503,
    when: "The audit trail cannot be written (a full disk, Redis down) and the log is set to deny meanwhile (`onAuditFailure: 'deny'`), or a `durable` log could not write a decision's event before answering.",
    fix: "Free the disk or bring the sink back (see the log's `stats()`); calls are allowed again once a write succeeds, with no restart.",
  },
} as const satisfies Record<string, CatalogEntry>
