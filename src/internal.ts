/**
 * What the adapters (`agent-trust/mcp`, `agent-trust/langchain`) share with the kernel but
 * users do not: reachable only from inside the package as `#internal` (package.json
 * `imports`), never an export, so it can change without a major version.
 */
export { allowedEvent, peerRefused, refusedEvent } from './audit/events.js'
export { ToolCatalog } from './config/tools.js'
export { readTrustFile, readTrustFileSync } from './config/trust-file.js'
export { canonicalJson, hashArguments, sha256b64url } from './lib/hash.js'
export { dependencyMissing, loadWithPeers, peerInstalled } from './lib/peer.js'
export { printable } from './policy/printable.js'
export { forwardableTraceContext } from './policy/trace-context.js'
export type { TraceContext } from './policy/trace-context.js'
export { toAgentTrustError } from './verifier/index.js'
export type { CertificateRevocationChecker, TlsCredentials } from './identity/types.js'
export { cryptoKey, fn, instanceOf, optionProblem, parseOptions, pemLike, withMethods } from './lib/options.js'
