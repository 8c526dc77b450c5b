import { hash } from 'node:crypto'

/** JSON with object keys sorted at every level: one spelling per value, for hashing. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`
  const keys = Object.keys(value).sort()
  const parts: string[] = []
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k]
    if (v === undefined || typeof v === 'function') continue
    parts.push(`${JSON.stringify(k)}:${canonicalJson(v)}`)
  }
  return `{${parts.join(',')}}`
}

/** base64url SHA-256: thumbprints, token and argument hashes, ETags. */
export function sha256b64url(data: string | Uint8Array): string {
  // The one-shot costs half of a Hash object (it is on the audited call path, per call).
  return hash('sha256', data, 'base64url')
}

/** A hash of tool arguments for audit records: never the arguments themselves. */
export function hashArguments(args: unknown): string | undefined {
  if (args === undefined) return undefined
  return sha256b64url(canonicalJson(args))
}
