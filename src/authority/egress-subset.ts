/**
 * Is a child's egress declaration within its parent's? Exact match, or the parent declares
 * `scheme://*.domain[:port]` and the child's host is a subdomain on a label boundary.
 */
export function egressCovered(parent: readonly string[], child: string): boolean {
  if (parent.includes(child)) return true
  const c = /^([a-z]+):\/\/([^/:]+)(:\d+)?$/i.exec(child)
  if (c === null) return false
  for (const p of parent) {
    const m = /^([a-z]+):\/\/\*\.([^/:]+)(:\d+)?$/i.exec(p)
    if (m === null) continue
    if (m[1]!.toLowerCase() !== c[1]!.toLowerCase() || (m[3] ?? '') !== (c[3] ?? '')) continue
    const host = c[2]!.toLowerCase().replace(/^\*\./, '')
    if (host.endsWith(`.${m[2]!.toLowerCase()}`)) return true
  }
  return false
}
