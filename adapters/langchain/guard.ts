/**
 * Guarded LangChain tools: every call is checked against a fresh capability token minted by
 * the authority for exactly this call, and verified by the toolkit's own verifier.
 *
 * Subpath: `agent-trust/langchain`.
 */
import { Runnable } from '@langchain/core/runnables'
import {
  DynamicStructuredTool,
  DynamicTool,
  StructuredTool,
  Tool,
  isRunnableToolLike,
  type StructuredToolInterface,
} from '@langchain/core/tools'
import {
  ConfigInvalid,
  parseManifest,
  TokenMissing,
  type AgentDeclaration,
  type CapabilityIssuer,
  type Manifest,
  type ManifestInput,
  type Requirement,
  type ResolvedTool,
  type Verifier,
} from 'agent-trust'
import { parseOptions, ToolCatalog, toAgentTrustError, withMethods } from '#internal'
import { z } from 'zod'
import { AGENT_TRUST_CONTEXT_KEY, callerFromContext } from './context.js'

/**
 * How to guard the tools of one toolkit. The toolkit is a tool server in the manifest: an
 * agent whose `tools` declare each tool's operation and scope template.
 */
export interface ToolGuardOptions {
  /**
   * Mints one token per call (`mintForTool`): the in-process `Authority` or a remote client
   * implementing `CapabilityIssuer`.
   */
  readonly authority: CapabilityIssuer
  /**
   * The toolkit's verifier. Its `id` is the toolkit's agent id in the manifest (the tokens'
   * `aud`), and its `mode` (`AGENT_TRUST`: enforce, audit, off) applies to every call.
   */
  readonly verifier: Verifier
  /**
   * The manifest holding the toolkit's tool declarations. Default: read from `authority`
   * when it is an in-process `Authority`; required with a remote authority client.
   */
  readonly manifest?: Manifest | ManifestInput
  /** Lifetime of the per-call tokens, in seconds. Default: the manifest's (60). */
  readonly ttlSeconds?: number
}

/** {@link ToolGuardOptions}'s members, shared with the middleware's options. */
export const ToolGuardShape = {
  authority: withMethods<CapabilityIssuer>('mintForTool'),
  verifier: z.custom<Verifier>(
    (v) => typeof v === 'object' && v !== null && typeof (v as Verifier).authorize === 'function' && typeof (v as Verifier).id === 'string',
    { message: "expected the toolkit's Verifier (createVerifier), whose id is the toolkit id" },
  ),
  manifest: z.unknown().optional(),
  ttlSeconds: z.int().min(1).max(300).optional(),
}
const ToolGuardOptionsSchema = z.strictObject(ToolGuardShape)

/** Anything that hands out tools: a LangChain `BaseToolkit` or a plain array. */
export type ToolSource<T = unknown> = readonly T[] | { getTools(): readonly T[] }

/** Tools this module produced or already checks itself: never wrapped twice. */
const guardedTools = new WeakSet<object>()

/** True when `tool` was produced by {@link guardTool}, {@link guardTools} or a spawn tool of this module. */
export function isGuardedTool(tool: unknown): boolean {
  return typeof tool === 'object' && tool !== null && guardedTools.has(tool)
}

/** @internal Mark a tool that performs its own agent-trust check (the spawn tools). */
export function markSelfGuarded<T extends object>(tool: T): T {
  guardedTools.add(tool)
  return tool
}

// The LangChain implementations that route a call through `_call` after schema validation.
// A tool overriding `invoke` or `call` could run without reaching the check: refused.
const KNOWN_CALLS = new Set<unknown>([
  StructuredTool.prototype.call,
  Tool.prototype.call,
  DynamicTool.prototype.call,
  DynamicStructuredTool.prototype.call,
])

function label(tool: unknown): string {
  const t = tool as { name?: unknown; type?: unknown } | null
  const raw = typeof t?.name === 'string' ? t.name : typeof t?.type === 'string' ? t.type : 'unnamed'
  return raw.replace(/[^\x20-\x7e]/g, '?').slice(0, 64)
}

/**
 * Refuse, at set-up, anything whose calls cannot be checked here. Provider-side server
 * tools (`{ type: 'web_search_...' }` and the like) are run by the model provider, never by
 * LangChain, so no local guard could see their calls.
 */
export function assertGuardable(tool: unknown): asserts tool is StructuredToolInterface {
  if (!Runnable.isRunnable(tool)) {
    throw new ConfigInvalid(
      `"${label(tool)}" is a provider-side server tool: the model provider runs it, LangChain never does, so agent-trust cannot check its calls. Remove it, or expose that capability as a local tool.`,
      { details: { rule: 'server-tool' } },
    )
  }
  if (isRunnableToolLike(tool)) {
    throw new ConfigInvalid(
      `"${label(tool)}" is a RunnableToolLike (runnable.asTool()); wrap the runnable with tool() so its calls can be checked`,
      { details: { rule: 'tool-kind' } },
    )
  }
  if (!(tool instanceof StructuredTool)) {
    throw new ConfigInvalid(
      `"${label(tool)}" is not a StructuredTool of this @langchain/core; agent-trust guards StructuredTool, DynamicStructuredTool, Tool and DynamicTool`,
      {
        details: { rule: 'tool-kind' },
      },
    )
  }
  const t = tool as unknown as { invoke: unknown; call: unknown; _call: unknown }
  if (t.invoke !== StructuredTool.prototype.invoke || !KNOWN_CALLS.has(t.call) || typeof t._call !== 'function') {
    throw new ConfigInvalid(
      `tool "${label(tool)}" overrides invoke() or call(); agent-trust can only guard tools that run through _call()`,
      { details: { rule: 'tool-kind' } },
    )
  }
}

/** A shallow copy of a plain-object argument: the scope is computed from, and the tool runs with, the same values. */
function snapshot(arg: unknown): unknown {
  if (typeof arg !== 'object' || arg === null || Array.isArray(arg)) return arg
  const proto = Object.getPrototypeOf(arg)
  return proto === Object.prototype || proto === null ? { ...(arg as Record<string, unknown>) } : arg
}

/** What a scope template reads: the argument object, or `{ input }` for a string-input `Tool`. */
function scopeArgsOf(args: unknown): Readonly<Record<string, unknown>> {
  if (typeof args === 'object' && args !== null && !Array.isArray(args)) return args as Record<string, unknown>
  if (typeof args === 'string' || typeof args === 'number') return { input: args }
  return {}
}

function catalogOf(serverId: string, options: ToolGuardOptions): ToolCatalog {
  let declaration: AgentDeclaration | undefined
  if (options.manifest !== undefined) {
    declaration = parseManifest(options.manifest).agents.find((a) => a.id === serverId)
  } else {
    const lookup = (options.authority as { agent?: (id: string) => { declaration: AgentDeclaration } | undefined }).agent
    if (typeof lookup !== 'function') {
      throw new ConfigInvalid('pass `manifest`: a remote authority client cannot tell which tools the toolkit declares', {
        details: { rule: 'manifest' },
      })
    }
    declaration = lookup.call(options.authority, serverId)?.declaration
  }
  if (declaration === undefined) {
    throw new ConfigInvalid(`the toolkit "${serverId.slice(0, 64)}" (the verifier's id) is not an agent in the manifest`, {
      details: { agentId: serverId.slice(0, 64) },
    })
  }
  return new ToolCatalog(serverId, declaration.tools)
}

/**
 * One toolkit's guard: options checked once, declarations compiled once.
 * @internal Use {@link guardTool}, {@link guardTools} or `agentTrustMiddleware`.
 */
export class ToolGuard {
  readonly id: string
  readonly verifier: Verifier
  readonly #authority: CapabilityIssuer
  readonly #catalog: ToolCatalog
  readonly #ttl: number | undefined
  /** Tools wrapped on the fly by the middleware, so each is wrapped once. */
  readonly #cache = new WeakMap<object, StructuredToolInterface>()

  /** `options` are checked by the factory that builds the guard ({@link parseToolGuardOptions}). */
  constructor(options: ToolGuardOptions) {
    const { authority, verifier, ttlSeconds } = options
    this.id = verifier.id
    this.verifier = verifier
    this.#authority = authority
    this.#ttl = ttlSeconds
    this.#catalog = catalogOf(this.id, options)
  }

  /** The tool's effective declaration; a bad scope template or a name unfit for a scope fails here, at set-up. */
  resolve(name: string): ResolvedTool {
    try {
      return this.#catalog.resolve(name)
    } catch (cause) {
      throw new ConfigInvalid(
        `tool "${label({ name })}" cannot be guarded: its scope (declared, or tool:<toolkit>:<name>) is not a valid scope template`,
        {
          cause,
          details: { rule: 'tool-scope' },
        },
      )
    }
  }

  /**
   * The check, for one call. Resolves when the call may proceed; rejects with a coded error
   * otherwise. The token lives only in this function's frame.
   */
  async authorize(name: string, tool: ResolvedTool, args: unknown, config: unknown): Promise<void> {
    const verifier = this.verifier
    if (verifier.mode === 'off') return
    const enforce = verifier.mode === 'enforce'
    const scopeArgs = scopeArgsOf(args)
    // Identity from the runtime context only; never `configurable`, never metadata.
    const caller = callerFromContext((config as { context?: unknown } | undefined)?.context)
    let token: string | undefined
    if (caller !== undefined) {
      try {
        const minted = await this.#authority.mintForTool({
          subject: caller.agentId,
          audience: this.id,
          tool: name,
          args: scopeArgs,
          context: { session_id: caller.session_id, user_id: caller.user_id, task_id: caller.task_id },
          ...(this.#ttl === undefined ? {} : { ttlSeconds: this.#ttl }),
        })
        token = minted.token
      } catch (e) {
        // The authority audited the refusal. In audit mode the call proceeds unchecked.
        if (enforce) throw toAgentTrustError(e)
        return
      }
    }
    let requirement: Requirement
    try {
      // Computed here, from the toolkit's own declaration: the callee's policy, not the minter's answer.
      requirement = { scope: tool.scope.fill(scopeArgs), operation: tool.operation, tool: name, args }
    } catch (e) {
      if (enforce) throw toAgentTrustError(e)
      return
    }
    if (token === undefined && enforce) {
      // Audited by the verifier as ERR_TOKEN_MISSING, then thrown with a message that says how to fix it.
      await verifier.authorize(undefined, requirement).catch(() => undefined)
      throw new TokenMissing(
        `no calling agent in the runtime context: invoke the agent with { context: agentTrustContext({ agentId, session_id, user_id, task_id }) } (key "${AGENT_TRUST_CONTEXT_KEY}")`,
        {
          details: { rule: 'caller' },
        },
      )
    }
    // enforce: rejects with the coded error (audited); audit: records and resolves.
    await verifier.authorize(token, requirement)
  }

  /** A guarded copy of `tool` (same prototype, so `instanceof`, schema, returnDirect and responseFormat are kept). */
  wrap<T extends StructuredToolInterface>(tool: T): T {
    if (isGuardedTool(tool)) return tool
    assertGuardable(tool)
    const cached = this.#cache.get(tool)
    if (cached !== undefined) return cached as T
    const name = tool.name
    const resolved = this.resolve(name)
    // StructuredTool.call() validates the input against the schema, then calls _call with the
    // parsed value: the check sees exactly the arguments the tool runs with.
    const guarded = interpose(tool, async (arg, config, run) => {
      const args = snapshot(arg)
      await this.authorize(name, resolved, args, config)
      return run(args)
    })
    this.#cache.set(tool, guarded)
    return guarded
  }
}

/**
 * A copy of `tool` whose `_call` goes through `check` first. Same prototype (so `instanceof`,
 * description, schema, returnDirect, responseFormat are the original's), with the name and
 * the implementation pinned at wrap time: the name decides the scope, so it may not change
 * under the guard, and replacing the original's `_call` later does not reach the copy.
 * @internal
 */
export function interpose<T extends StructuredToolInterface>(
  tool: T,
  check: (arg: unknown, config: unknown, run: (arg: unknown) => unknown) => Promise<unknown>,
): T {
  const original = tool as unknown as { _call: (arg: unknown, runManager: unknown, config: unknown) => unknown }
  const impl = original._call
  const guarded = Object.create(tool) as T
  Object.defineProperties(guarded, {
    name: { value: tool.name, enumerable: true, writable: false, configurable: false },
    _call: {
      value: async function guardedCall(arg: unknown, runManager: unknown, config: unknown): Promise<unknown> {
        return check(arg, config, (a) => impl.call(original, a, runManager, config))
      },
      writable: false,
      configurable: false,
    },
  })
  guardedTools.add(guarded)
  return guarded
}

/**
 * Guard one tool of a toolkit. The guarded tool keeps the original's name, description,
 * schema, `returnDirect`, `responseFormat` and prototype (`instanceof` holds); each call
 * mints a token for the calling agent (from the runtime `context`), verifies it with the
 * toolkit's verifier, and only then runs the tool. A denial throws the coded error.
 *
 * @example
 * ```ts
 * const verifier = createVerifier({ id: 'agent-database-reader', issuers: [authority.trustedIssuer()] })
 * const readDocs = guardTool(readDocumentsTool, { authority, verifier })
 * await readDocs.invoke({ namespace: 'user-123' }, { context: agentTrustContext(caller) })
 * ```
 */
export function guardTool<T extends StructuredToolInterface>(tool: T, options: ToolGuardOptions): T {
  parseOptions('guardTool', ToolGuardOptionsSchema, options)
  return new ToolGuard(options).wrap(tool)
}

/**
 * Guard every tool of a toolkit (a `BaseToolkit` or an array). Refuses, at set-up, any
 * provider-side server tool, `RunnableToolLike`, or tool that bypasses `_call`.
 *
 * @example
 * ```ts
 * const tools = guardTools([readDocuments, writeDocument], { authority, verifier })
 * const agent = createAgent({ model, tools })
 * ```
 */
export function guardTools(source: ToolSource, options: ToolGuardOptions): StructuredToolInterface[] {
  const list: readonly unknown[] | undefined = Array.isArray(source)
    ? source
    : typeof (source as { getTools?: unknown })?.getTools === 'function'
      ? (source as { getTools(): readonly unknown[] }).getTools()
      : undefined
  if (list === undefined) throw new ConfigInvalid('guardTools takes an array of tools or a BaseToolkit', { details: { rule: 'tools' } })
  parseOptions('guardTools', ToolGuardOptionsSchema, options)
  for (const t of list) if (!isGuardedTool(t)) assertGuardable(t)
  const guard = new ToolGuard(options)
  return list.map((t) => guard.wrap(t as StructuredToolInterface))
}
