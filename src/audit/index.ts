/**
 * The tamper-evident audit trail.
 *
 * Subpath: `agent-trust/audit`.
 *
 * {@link createAuditLog} returns an {@link AuditLog} for the authority, verifiers and
 * adapters. `record()` is synchronous and cheap: it sanitizes the event, chains it (sequence
 * number, previous hash, own hash) and queues one line per sink. A background flush writes
 * the queues in batches; the call path never waits for a disk, a pipe or Redis.
 *
 * Each log instance is one chain with its own id, so several processes may write to one
 * file (or one Redis stream) and each chain still verifies on its own.
 *
 * @example
 * ```ts
 * import { createAuditLog, fileSink, verifyAuditTrail } from 'agent-trust/audit'
 * const audit = createAuditLog({ sinks: [fileSink('/var/log/agent-trust/audit.jsonl')] })
 * const authority = await Authority.create({ manifest, audit })
 * // ... on shutdown
 * await audit.close() // seals the chain
 * const report = await verifyAuditTrail('/var/log/agent-trust/audit.jsonl', { requireSealed: true })
 * ```
 *
 * @module agent-trust/audit
 */
export { AUDIT_FORMAT_VERSION, GENESIS_PREV, SEAL_NOTE } from './chain.js'
export type { AuditEvent, AuditHead } from './chain.js'
export { AuditTrailVerifier, verifyAuditLines } from './verify.js'
export type { AuditBreak, AuditBreakKind, AuditChainReport, AuditVerification, AuditVerifyOptions } from './verify.js'
export { fileSink, memorySink, stdoutSink } from './sinks.js'
export {
  CHECKPOINT_TYPE,
  createCheckpointSigner,
  readCheckpoints,
  signCheckpoint,
  verifyCheckpoint,
  withCheckpoints,
} from './checkpoint.js'
export type { AuditCheckpoint, CheckpointedLog, CheckpointOptions, CheckpointSigner } from './checkpoint.js'
export type { AuditRecord, AuditSink, FileSinkOptions, StreamSinkOptions } from './sinks.js'
export { discardAudit, MemoryAuditLog } from './types.js'
export type { AuditAction, AuditDecision, AuditEventInput, AuditLog } from './types.js'

export { createAuditLog, DEFAULT_AUDIT_FILE } from './log.js'
export type { AuditLogOptions, AuditLogStats, AuditSinkStats, ChainedAuditLog } from './log-types.js'
export { readAuditLines, verifyAuditTrail } from './read.js'
export type { AuditLine } from './read.js'
