/** What several command groups need: the manifest, the operator's name, the CLI's own audit trail. */
import { userInfo } from 'node:os'
import { createAuditLog, DEFAULT_AUDIT_FILE, fileSink, type ChainedAuditLog } from '../audit/index.js'
import { loadManifestFile, type Manifest } from '../config/manifest.js'
import { manifestPath, str, type Context, type OptionSpec } from './run.js'

export const OPERATOR_OPTIONS: OptionSpec = {
  by: { type: 'string' },
  'audit-file': { type: 'string' },
}

export const OPERATOR_HELP = `  --by <name>           who is acting, for the audit trail (default: AGENT_TRUST_OPERATOR, else the OS user)
  --audit-file <file>   where this command's own audit events go (default: AGENT_TRUST_AUDIT_FILE,
                        else ${DEFAULT_AUDIT_FILE}); each run is one sealed chain`

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

/** Run `fn` with an audit log on the CLI's trail; the chain is sealed when it returns. */
export async function withAudit<T>(ctx: Context, fn: (audit: ChainedAuditLog) => Promise<T>): Promise<T> {
  const file = str(ctx.values, 'audit-file') ?? ctx.io.env.AGENT_TRUST_AUDIT_FILE ?? DEFAULT_AUDIT_FILE
  const failures: string[] = []
  const audit = createAuditLog({ sinks: [fileSink(file)], onError: (e) => failures.push(e.message) })
  try {
    return await fn(audit)
  } finally {
    await audit.close()
    if (audit.stats().sinks.some((s) => s.pending > 0 || s.dropped > 0)) {
      ctx.io.err(`agent-trust: warning: the audit trail ${file} could not be written (${failures[0] ?? 'unknown error'})\n`)
    }
  }
}
