/** What several command groups need: the manifest, the operator's name, the CLI's own audit trail. */
import { userInfo } from 'node:os'
import { createAuditLog, DEFAULT_AUDIT_FILE, fileSink, type ChainedAuditLog } from '../audit/index.js'
import { loadManifestFile, type Manifest } from '../config/manifest.js'
import { escapeText, manifestPath, quote, str, type Context, type OptionSpec } from './run.js'

export const OPERATOR_OPTIONS: OptionSpec = {
  by: { type: 'string' },
  'audit-file': { type: 'string' },
}

export const OPERATOR_HELP = `  --by <name>           who is acting, for the audit trail (default: AGENT_TRUST_OPERATOR, else the OS user)
  --audit-file <file>   where this command's own audit events go (default: AGENT_TRUST_AUDIT_FILE,
                        else ${DEFAULT_AUDIT_FILE}); each run that records something is one sealed chain`

export function loadManifest(ctx: Context): Manifest {
  return loadManifestFile(manifestPath(ctx))
}

export function operator(ctx: Context): string {
  const by = str(ctx.values, 'by') ?? ctx.io.env.AGENT_TRUST_OPERATOR
  if (by !== undefined && by.trim() !== '') return by.trim().slice(0, 128)
  try {
    return userInfo().username
  } catch {
    return 'unknown-operator'
  }
}

/** What a command records on the CLI's trail. */
export type CliAudit = Pick<ChainedAuditLog, 'record'>

/**
 * Run `fn` with the CLI's audit trail. The chain is opened on the first event and sealed when
 * `fn` returns: a run that records nothing (it changed nothing) writes nothing at all.
 */
export async function withAudit<T>(ctx: Context, fn: (audit: CliAudit) => Promise<T>): Promise<T> {
  const file = str(ctx.values, 'audit-file') ?? ctx.io.env.AGENT_TRUST_AUDIT_FILE ?? DEFAULT_AUDIT_FILE
  const failures: string[] = []
  let log: ChainedAuditLog | undefined
  const audit: CliAudit = {
    record(event) {
      log ??= createAuditLog({ sinks: [fileSink(file)], onError: (e) => failures.push(e.message) })
      log.record(event)
    },
  }
  try {
    return await fn(audit)
  } finally {
    if (log !== undefined) {
      await log.close()
      if (log.stats().sinks.some((s) => s.pending > 0 || s.dropped > 0)) {
        ctx.io.err(
          `agent-trust: warning: the audit trail ${quote(file, 256)} could not be written (${escapeText(failures[0] ?? 'unknown error', { max: 200 })})\n`,
        )
      }
    }
  }
}
