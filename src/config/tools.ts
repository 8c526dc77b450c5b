/**
 * The tool catalog of one server or toolkit: every declared tool's operation and scope
 * template compiled once, when the catalog is built, and one rule for tools the manifest
 * does not declare: they are `execute` tools requiring `tool:<server>:<name>`, so an
 * undeclared tool is never easier to call than a declared one.
 *
 * The authority, the MCP guard and the LangChain guard all resolve tools here, so a token
 * minted for a call carries exactly the scope the callee's guard requires.
 */
import { ScopeInvalid } from '../errors.js'
import { printable } from '../policy/printable.js'
import { compileScopeTemplate, isScopeSegment, type ScopeTemplate } from '../policy/scopes.js'
import type { Operation } from '../policy/trust.js'
import type { ToolDeclaration } from './manifest.js'

/** A tool's effective declaration: undeclared tools are `execute` with `tool:<server>:<name>`. */
export interface ResolvedTool {
  readonly name: string
  readonly operation: Operation
  readonly scope: ScopeTemplate
  /** Whether the manifest declares the tool (false: the undeclared-tool rule applied). */
  readonly declared: boolean
}

/**
 * Resolve one tool without a catalog. Throws `ERR_SCOPE_INVALID` when the declared template,
 * or `tool:<server>:<name>` for an undeclared tool, is not a valid scope template.
 */
export function resolveTool(serverId: string, name: string, declared: ToolDeclaration | undefined): ResolvedTool {
  // The name becomes one segment of the default scope, taken literally: a name with `:`
  // would add segments another tool's grant covers, one with `{…}` would make the call's
  // own arguments choose the scope (`{path}` with path "write_file").
  if (declared?.scope === undefined && !isScopeSegment(name))
    throw new ScopeInvalid(
      `tool name "${printable(name, 64)}" cannot be a scope segment ([A-Za-z0-9._@/+-], 1-64): declare the tool with a scope`,
      { details: { rule: 'tool-name' } },
    )
  return {
    name,
    operation: declared?.operation ?? 'execute',
    scope: compileScopeTemplate(declared?.scope ?? `tool:${serverId}:${name}`),
    declared: declared !== undefined,
  }
}

/** Undeclared names come from callers: at most this many resolutions are remembered. */
const UNDECLARED_CACHE_SIZE = 1024

export class ToolCatalog {
  readonly serverId: string
  readonly #declared: ReadonlyMap<string, ResolvedTool>
  readonly #undeclared = new Map<string, ResolvedTool>()

  /** Compiles every declaration now: a bad template fails at set-up, not on the first call. */
  constructor(serverId: string, declarations: readonly ToolDeclaration[]) {
    this.serverId = serverId
    this.#declared = new Map(declarations.map((d) => [d.name, resolveTool(serverId, d.name, d)]))
  }

  /** The declared tools, compiled. */
  declared(): IterableIterator<ResolvedTool> {
    return this.#declared.values()
  }

  has(name: string): boolean {
    return this.#declared.has(name)
  }

  /** Throws `ERR_SCOPE_INVALID` for an undeclared name that cannot be a scope segment. */
  resolve(name: string): ResolvedTool {
    const declared = this.#declared.get(name)
    if (declared !== undefined) return declared
    let tool = this.#undeclared.get(name)
    if (tool === undefined) {
      tool = resolveTool(this.serverId, name, undefined)
      if (this.#undeclared.size >= UNDECLARED_CACHE_SIZE) this.#undeclared.clear()
      this.#undeclared.set(name, tool)
    }
    return tool
  }
}
