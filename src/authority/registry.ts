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
  /** Spawn ancestors, parent first (empty for an agent without a parent). */
  readonly ancestors: readonly string[]
  /** Its tools, compiled when the agent was registered. */
  readonly catalog: ToolCatalog
  /** When this authority last restarted its idle time in the store, epoch ms (0: never). */
  touchedAtMs: number
}

export class AgentRegistry {
  readonly #agents = new Map<string, AgentState>()

  constructor(manifest: Manifest) {
    for (const a of manifest.agents) this.add(a)
    for (const a of manifest.agents) if (a.parent !== undefined) this.#agents.get(a.parent)?.children.add(a.id)
  }

  add(declaration: AgentDeclaration): AgentState {
    const parent = declaration.parent === undefined ? undefined : this.#agents.get(declaration.parent)
    const state: AgentState = {
      declaration,
      level: declaration.trustLevel,
      revoked: false,
      children: new Set(),
      ancestors: declaration.parent === undefined ? [] : [declaration.parent, ...(parent?.ancestors ?? [])],
      catalog: new ToolCatalog(declaration.id, declaration.tools),
      touchedAtMs: 0,
    }
    this.#agents.set(declaration.id, state)
    if (declaration.parent !== undefined) this.#agents.get(declaration.parent)?.children.add(declaration.id)
    return state
  }

  /** Forget a retired agent (its parent's child slot is freed). */
  remove(id: string): void {
    const a = this.#agents.get(id)
    if (a === undefined) return
    this.#agents.delete(id)
    if (a.declaration.parent !== undefined) this.#agents.get(a.declaration.parent)?.children.delete(id)
  }

  get(id: string): AgentState | undefined {
    return this.#agents.get(id)
  }

  has(id: string): boolean {
    return this.#agents.has(id)
  }

  /** The agent and all its descendants, parents first. O(descendants), no recursion. */
  lineage(id: string): string[] {
    if (!this.#agents.has(id)) return []
    const seen = new Set<string>([id])
    const out: string[] = [id]
    for (let i = 0; i < out.length; i++) {
      for (const c of this.#agents.get(out[i] as string)?.children ?? []) {
        if (seen.has(c)) continue
        seen.add(c)
        out.push(c)
      }
    }
    return out
  }

  ids(): string[] {
    return [...this.#agents.keys()]
  }
}
