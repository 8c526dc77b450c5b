/**
 * Every bound agent-trust enforces, in one place. Schemas, the authority (at mint) and the
 * verifier (at verify) all read these, so a token the authority mints is one a verifier
 * accepts, and a documented limit is the enforced one.
 *
 * Pure constants: no I/O, no imports.
 */

/** A compact JWS longer than this is refused before it is decoded (bytes; tokens are ASCII). */
export const MAX_TOKEN_BYTES = 8 * 1024
/** Hard ceiling on `exp - iat`, seconds: capability tokens live at most 5 minutes. */
export const MAX_TOKEN_LIFETIME_SECONDS = 300
/** `exp - iat` when a request does not ask for another lifetime, seconds. */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 60
/** Clock skew tolerated on `exp`/`nbf`/`iat` when none is configured, seconds. */
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 5
/** The largest clock tolerance any verifier or authority may be configured with, seconds. */
export const MAX_CLOCK_TOLERANCE_SECONDS = 30
/**
 * How long past a token's `exp` every revocation and single-use marker is kept, seconds:
 * the largest tolerance any verifier may apply on `exp`, plus the same again for an `iat`
 * up to that far in the future. A marker kept by the tolerance of the process that wrote it
 * would be forgotten while a verifier with a larger tolerance still accepts the token.
 */
export const MARKER_GRACE_SECONDS = 2 * MAX_CLOCK_TOLERANCE_SECONDS
/** No chain of delegations (`act` nesting, `chain` entries) longer than this is minted or accepted. */
export const MAX_DELEGATION_CHAIN = 8
/**
 * Spawn generations below a manifest agent: a spawned agent has at most this many ancestors,
 * and the `anc` claim (the ancestors of every agent a token speaks for) holds at most
 * `MAX_ANCESTRY_CLAIM` ids.
 */
export const MAX_SPAWN_DEPTH = 8
export const MAX_ANCESTRY_CLAIM = 32
/** Children one parent may have spawned (`AuthorityOptions.maxChildrenPerParent` default). */
export const DEFAULT_MAX_CHILDREN_PER_PARENT = 1000
/** A spawned agent idle this long is retired (`AuthorityOptions.retireIdleChildrenAfterSeconds` default). */
export const DEFAULT_IDLE_RETIREMENT_SECONDS = 3600
/** The shortest idle time accepted: longer than any token lives, with every clock tolerance. */
export const MIN_IDLE_RETIREMENT_SECONDS = 360
/** The longest idle time accepted (30 days). */
export const MAX_IDLE_RETIREMENT_SECONDS = 30 * 24 * 3600
/** The largest `maxChildrenPerParent` an authority accepts. */
export const MAX_CHILDREN_PER_PARENT = 100_000

/** Segments in one scope. */
export const MAX_SCOPE_SEGMENTS = 16
/** Characters in one scope segment. */
export const MAX_SEGMENT_LENGTH = 64
/** Scopes in one token. */
export const MAX_SCOPES_PER_TOKEN = 32

/** Characters in an agent id (`sub`, `aud`, actors) or an issuer id. */
export const MAX_AGENT_ID_LENGTH = 255
/** Characters in a key id (`kid`). */
export const MAX_KID_LENGTH = 128
/** Characters in each `context` value (`session_id`, `user_id`, `task_id`). */
export const MAX_CONTEXT_VALUE_LENGTH = 256
/** Characters in a tool name. */
export const MAX_TOOL_NAME_LENGTH = 128
/** Grant patterns, egress destinations and tools per agent in a manifest. */
export const MAX_MANIFEST_LIST_LENGTH = 256

/** Characters of a W3C Trace Context `tracestate` forwarded (the minimum the spec asks vendors to propagate). */
export const MAX_TRACESTATE_LENGTH = 512
/** List members of a `tracestate` (W3C Trace Context section 3.3.1). */
export const MAX_TRACESTATE_MEMBERS = 32
/** Bytes of a W3C Baggage value forwarded (the spec's minimum a platform must propagate). */
export const MAX_BAGGAGE_LENGTH = 8192
/** List members of a `baggage` value (W3C Baggage section 3.3). */
export const MAX_BAGGAGE_MEMBERS = 180
