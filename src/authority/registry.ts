/**
 * The authority's live view of the manifest: agents added by spawn, revocations, and
 * approved trust changes. Pure in-memory state; decisions read from it.
 */
import type { AgentDeclaration, Manifest } from '../config/manifest.js'
import { ToolCatalog } from '../config/tools.js'
import type { TrustLevel } from '../policy/trust.js'

export interface AgentState {
  readonly declaration: AgentDeclaration
  level: TrustLevel
  revoked: boolean
  readonly children: Set<string>
  /** Its tools, compiled when the agent was registered. */
  readonly catalog: ToolCatalog
}

export class AgentRegistry {
  readonly #agents = new Map<string, AgentState>()

  constructor(manifest: Manifest) {
    for (const a of manifest.agents) this.add(a)
    for (const a of manifest.agents) if (a.parent !== undefined) this.#agents.get(a.parent)?.children.add(a.id)
  }

  add(declaration: AgentDeclaration): AgentState {
    const state: AgentState = {
      declaration,
      level: declaration.trustLevel,
      revoked: false,
      children: new Set(),
      catalog: new ToolCatalog(declaration.id, declaration.tools),
    }
    this.#agents.set(declaration.id, state)
    if (declaration.parent !== undefined) this.#agents.get(declaration.parent)?.children.add(declaration.id)
    return state
  }

  get(id: string): AgentState | undefined {
    return this.#agents.get(id)
  }

  has(id: string): boolean {
    return this.#agents.has(id)
  }

  /** The agent and all its descendants, parents first. */
  lineage(id: string): string[] {
    const out: string[] = []
    const visit = (a: string): void => {
      if (out.includes(a)) return
      out.push(a)
      for (const c of this.#agents.get(a)?.children ?? []) visit(c)
    }
    if (this.#agents.has(id)) visit(id)
    return out
  }

  ids(): string[] {
    return [...this.#agents.keys()]
  }
}
