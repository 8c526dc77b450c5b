/** The package version, read from the package's own package.json at run time (from dist or from source). */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Walk up from `from` (a file URL or path inside the package) to the first package.json
 * named `agent-trust` and return its `version`; undefined when there is none.
 */
export function packageVersion(from: string | URL = import.meta.url): string | undefined {
  let dir = dirname(typeof from === 'string' && !from.startsWith('file:') ? from : fileURLToPath(from))
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown }
      if (pkg.name === 'agent-trust' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // no package.json here, or not readable: keep walking up
    }
    const up = dirname(dir)
    if (up === dir) return undefined
    dir = up
  }
}
