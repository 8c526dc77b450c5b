/**
 * Optional peer dependencies, named when they are missing.
 *
 * A subpath that needs a peer (`agent-trust/egress` needs `undici`, `agent-trust/mcp` the MCP
 * SDK, ...) is published as a small entry module that loads its implementation with a dynamic
 * `import()` through {@link loadWithPeers}. A static import of a missing package fails while
 * Node links the module graph, before any code of the package runs, with an error that names
 * neither the subpath nor the fix; the dynamic import lets the entry catch that failure and
 * throw {@link DependencyMissing} instead: one line with the subpath and the exact
 * `npm install` command. The implementation, and every call into it, is unchanged.
 */
import { createRequire } from 'node:module'
import { DependencyMissing } from '../errors.js'

const require = createRequire(import.meta.url)

/** True when `name` resolves from this package's location (where its modules import it from). */
export function peerInstalled(name: string): boolean {
  try {
    require.resolve(`${name}/package.json`)
    return true
  } catch (e) {
    // A package whose `exports` hides package.json is installed all the same.
    return (e as { code?: unknown }).code === 'ERR_PACKAGE_PATH_NOT_EXPORTED'
  }
}

/** The peers in `names` that are not installed, in order. */
export function missingPeers(names: readonly string[]): string[] {
  return names.filter((n) => !peerInstalled(n))
}

/** The one-line error for `what` (a subpath or a command) missing `packages`. */
export function dependencyMissing(what: string, packages: readonly string[]): DependencyMissing {
  const list = packages.map((p) => `"${p}"`).join(' and ')
  const message = `${what} needs the optional peer dependenc${packages.length === 1 ? 'y' : 'ies'} ${list}, not installed: run \`npm install ${packages.join(' ')}\``
  return new DependencyMissing(message, { details: { subpath: what, packages: packages.join(' ') } })
}

function isModuleNotFound(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}

/**
 * Run `load` (a dynamic import); when it fails because one of `peers` is not installed,
 * throw {@link DependencyMissing} naming `what` and every missing peer. Any other failure
 * (a missing file, a peer of an unsupported version) is rethrown as it is. The error has no
 * `cause`, so an uncaught one prints as the single line that says what to install.
 */
export async function loadWithPeers<T>(what: string, peers: readonly string[], load: () => Promise<T>): Promise<T> {
  try {
    return await load()
  } catch (e) {
    if (!isModuleNotFound(e)) throw e
    const missing = missingPeers(peers)
    if (missing.length === 0) throw e
    throw dependencyMissing(what, missing)
  }
}
