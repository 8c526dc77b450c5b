/**
 * Sub-agents: every spawn goes through `authority.spawn` (only an L3
 * parent; the child at most its level, grants and egress; depth below its parent's), and
 * the child runs as itself, in a context that carries nothing of its parent but the audit ids.
 *
 * Three common shapes: an agent wrapped as a tool ({@link agentAsTool}), a `task` tool that
 * starts a named sub-agent ({@link taskTool}), supervisor hand-offs `transfer_to_<name>`
 * ({@link handoffTool}). All are built on {@link runSubagent}.
 *
 * Subpath: `agent-trust/langchain`.
 */
import { randomUUID } from 'node:crypto'
import { AIMessage, HumanMessage, type BaseMessage } from '@langchain/core/messages'
import { tool, type DynamicStructuredTool } from '@langchain/core/tools'
import { z } from 'zod'
import {
  AgentSchema,
  ConfigInvalid,
  SpawnDenied,
  type AgentDeclaration,
  type AgentDeclarationInput,
  type CapabilityIssuer,
} from 'agent-trust'
import { fn, parseOptions, withMethods } from '#internal'
import { AGENT_TRUST_CONTEXT_KEY, callerFromContext, runIsolated, type AgentTrustCaller } from './context.js'
import { markSelfGuarded } from './guard.js'

/** Anything invoked like a `createAgent` agent. */
export interface InvokableAgent {
  invoke(input: { messages: BaseMessage[] }, config?: Record<string, unknown>): Promise<unknown>
}

/** The child's declaration minus `id` and `parent`, which the spawn assigns. */
export type ChildDeclaration = Omit<AgentDeclarationInput, 'id' | 'parent'>

/** A sub-agent the model may start. Fixed by the developer at set-up: the model only picks it. */
export interface SubagentDefinition {
  /** Tool-safe name: 1-48 of `[A-Za-z0-9_-]`. */
  readonly name: string
  /** Shown to the model. */
  readonly description: string
  /** The child agent (usually `createAgent`, with its tools guarded as well). */
  readonly agent: InvokableAgent
  /** What the child may do. Checked against the *calling* parent at every spawn. */
  readonly child: ChildDeclaration
  /** Extra runtime-context fields for the child (never copied from the parent). */
  readonly context?: Readonly<Record<string, unknown>>
}

export interface SpawnOptions {
  /** The authority that decides spawns (`CapabilityIssuer.spawn`). */
  readonly authority: CapabilityIssuer
  /** The child's agent id for one spawn. Default `<parent>.<name>.<uuid>` cut to 255 chars (ids are never reused). */
  readonly childId?: (parentId: string, name: string) => string
  /**
   * Retire the child when its run ends, returned or thrown (default true): its tokens are
   * refused from then on and the parent's child slot is freed, so a parent that starts a
   * sub-agent per call never reaches `maxChildrenPerParent`. Needs an issuer with `retire`
   * (`Authority`, `AuthorityClient`); with another issuer children stay registered.
   */
  readonly retireAfterRun?: boolean
}

const NAME = /^[A-Za-z0-9_-]{1,48}$/

function defaultChildId(parentId: string, name: string): string {
  const suffix = `.${name}.${randomUUID()}`
  return parentId.slice(0, 255 - suffix.length) + suffix
}

function checkDefinition(def: SubagentDefinition): void {
  if (typeof def?.name !== 'string' || !NAME.test(def.name))
    throw new ConfigInvalid('a sub-agent name is 1-48 of [A-Za-z0-9_-]', { details: { rule: 'subagent-name' } })
  if (typeof def.agent?.invoke !== 'function')
    throw new ConfigInvalid(`sub-agent "${def.name}" needs an agent with invoke()`, { details: { rule: 'subagent-agent' } })
  // The template's shape fails here, at set-up; what it may hold is decided per parent, at spawn.
  const probe = AgentSchema.safeParse({ ...def.child, id: 'agent-trust.probe' })
  if (!probe.success || 'parent' in (def.child ?? {}) || 'id' in (def.child ?? {})) {
    throw new ConfigInvalid(`sub-agent "${def.name}": the child declaration is invalid (id and parent are assigned by the spawn)`, {
      details: { rule: 'subagent-child' },
    })
  }
}

const SpawnShape = {
  authority: withMethods<CapabilityIssuer>('spawn'),
  childId: fn<(parentId: string, name: string) => string>().optional(),
  retireAfterRun: z.boolean().optional(),
}
const SpawnOptionsSchema = z.strictObject(SpawnShape)
const TaskToolOptionsSchema = z.strictObject({ ...SpawnShape, name: z.string().min(1).optional() })

function checkOptions(options: SpawnOptions, factory: string): void {
  parseOptions(factory, factory === 'taskTool' ? TaskToolOptionsSchema : SpawnOptionsSchema, options)
}

function textOf(result: unknown): string {
  const messages = (result as { messages?: unknown })?.messages
  if (!Array.isArray(messages)) return ''
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as unknown
    if (AIMessage.isInstance(m)) return typeof m.content === 'string' ? m.content : JSON.stringify(m.content)
  }
  return ''
}

/** What a spawn produced: the registered child and its final answer. */
export interface SubagentRun {
  readonly child: AgentDeclaration
  readonly result: unknown
  /** The last AI message's text. */
  readonly text: string
}

/**
 * Spawn `def` for the caller in `parentContext` and run it on `messages`.
 *
 * The parent is read from the runtime context (never `configurable`); the authority decides
 * the spawn and audits it; the child is invoked outside the parent's implicit LangChain
 * config (AsyncLocalStorage) with a context holding only its own identity plus the parent's
 * audit ids. No token is minted here: the child's guarded tools mint their own, as the child.
 */
export async function runSubagent(
  def: SubagentDefinition,
  input: { parentContext: unknown; messages: BaseMessage[]; signal?: AbortSignal; callbacks?: unknown },
  options: SpawnOptions,
): Promise<SubagentRun> {
  const parent = callerFromContext(input.parentContext)
  if (parent === undefined) {
    throw new SpawnDenied(
      `no calling agent in the runtime context (key "${AGENT_TRUST_CONTEXT_KEY}"): a sub-agent can only be spawned by a known parent`,
      { details: { rule: 'caller' } },
    )
  }
  const id = (options.childId ?? defaultChildId)(parent.agentId, def.name)
  const child = await options.authority.spawn({ parent: parent.agentId, child: { ...def.child, id } })
  const caller: AgentTrustCaller = Object.freeze({
    agentId: child.id,
    session_id: parent.session_id,
    user_id: parent.user_id,
    task_id: parent.task_id,
  })
  const config: Record<string, unknown> = { context: { ...def.context, [AGENT_TRUST_CONTEXT_KEY]: caller } }
  if (input.signal !== undefined) config.signal = input.signal
  // Callbacks carry tracing handlers only (no identity): the child's run nests under the tool's in traces.
  if (input.callbacks !== undefined) config.callbacks = input.callbacks
  let result: unknown
  try {
    result = await runIsolated(() => def.agent.invoke({ messages: input.messages }, config))
  } catch (e) {
    await retireChild(options, parent.agentId, child.id).catch(() => undefined)
    throw e
  }
  // A child that cannot be retired may still hold live tokens: the parent is told (fail closed)
  // rather than handed the answer as if the task had ended cleanly.
  await retireChild(options, parent.agentId, child.id)
  return { child, result, text: textOf(result) }
}

async function retireChild(options: SpawnOptions, parentId: string, childId: string): Promise<void> {
  if (options.retireAfterRun === false || typeof options.authority.retire !== 'function') return
  await options.authority.retire({ parent: parentId, agentId: childId })
}

interface ToolConfig {
  context?: unknown
  signal?: AbortSignal
  callbacks?: unknown
  state?: { messages?: unknown }
}

/**
 * An agent wrapped as a tool: each call spawns a fresh child through the authority and
 * runs the agent on the model's `input`.
 *
 * @example
 * ```ts
 * const researcher = agentAsTool({ name: 'researcher', description: 'Finds documents', agent: researchAgent,
 *   child: { trustLevel: 'L2', grants: ['db:read:documents:namespace:*'] } }, { authority })
 * const orchestrator = createAgent({ model, tools: [researcher] })
 * ```
 */
export function agentAsTool(def: SubagentDefinition, options: SpawnOptions): DynamicStructuredTool {
  checkDefinition(def)
  checkOptions(options, 'agentAsTool')
  const t = tool(
    async ({ input }: { input: string }, config: ToolConfig) => {
      const run = await runSubagent(
        def,
        { parentContext: config?.context, messages: [new HumanMessage(input)], signal: config?.signal, callbacks: config?.callbacks },
        options,
      )
      return run.text
    },
    {
      name: def.name,
      description: def.description,
      schema: z.object({ input: z.string().min(1).max(100_000).describe('What the sub-agent should do') }),
    },
  )
  return markSelfGuarded(t) as DynamicStructuredTool
}

/**
 * A `task` tool: the model names one of the developer's sub-agents (`subagent_type`) and
 * describes the job; each call spawns a fresh child of that kind.
 *
 * @example
 * ```ts
 * const task = taskTool([researcher, writer], { authority })
 * ```
 */
export function taskTool(defs: readonly SubagentDefinition[], options: SpawnOptions & { readonly name?: string }): DynamicStructuredTool {
  checkOptions(options, 'taskTool')
  if (!Array.isArray(defs) || defs.length === 0)
    throw new ConfigInvalid('taskTool needs at least one sub-agent', { details: { rule: 'subagents' } })
  const byName = new Map<string, SubagentDefinition>()
  for (const d of defs) {
    checkDefinition(d)
    if (byName.has(d.name)) throw new ConfigInvalid(`two sub-agents are named "${d.name}"`, { details: { rule: 'subagent-name' } })
    byName.set(d.name, d)
  }
  const names = [...byName.keys()] as [string, ...string[]]
  const listing = defs.map((d) => `- ${d.name}: ${d.description}`).join('\n')
  const t = tool(
    async ({ subagent_type, description }: { subagent_type: string; description: string }, config: ToolConfig) => {
      const def = byName.get(subagent_type)
      // The schema already restricts the name; this keeps the lookup fail-closed if it is bypassed.
      if (def === undefined) throw new SpawnDenied('no such sub-agent', { details: { rule: 'subagent-name' } })
      const run = await runSubagent(
        def,
        { parentContext: config?.context, messages: [new HumanMessage(description)], signal: config?.signal, callbacks: config?.callbacks },
        options,
      )
      return run.text
    },
    {
      name: options.name ?? 'task',
      description: `Start a sub-agent for a self-contained job. Available sub-agents:\n${listing}`,
      schema: z.object({
        subagent_type: z.enum(names).describe('Which sub-agent to start'),
        description: z.string().min(1).max(100_000).describe('The job, with everything the sub-agent needs to know'),
      }),
    },
  )
  return markSelfGuarded(t) as DynamicStructuredTool
}

/**
 * A supervisor hand-off, `transfer_to_<name>`: spawns the worker as a child of the calling
 * supervisor and runs it on the user's messages of the conversation so far (plus the
 * supervisor's optional note); the worker's answer comes back to the supervisor.
 *
 * Only human messages are handed over: tool results hold data read with the supervisor's
 * capabilities, which the worker may not be entitled to.
 *
 * @example
 * ```ts
 * const supervisor = createAgent({ model, tools: [handoffTool(mathWorker, { authority }), handoffTool(researchWorker, { authority })] })
 * ```
 */
export function handoffTool(def: SubagentDefinition, options: SpawnOptions): DynamicStructuredTool {
  checkDefinition(def)
  checkOptions(options, 'handoffTool')
  const t = tool(
    async ({ note }: { note?: string }, config: ToolConfig) => {
      const history = Array.isArray(config?.state?.messages) ? (config.state.messages as unknown[]) : []
      const messages: BaseMessage[] = history
        .filter((m): m is HumanMessage => HumanMessage.isInstance(m))
        .map((m) => new HumanMessage({ content: m.content }))
      if (note !== undefined && note.length > 0) messages.push(new HumanMessage(note))
      // Not a security decision: nothing was spawned yet.
      if (messages.length === 0) throw new Error('nothing to hand off: the conversation has no user message and no note')
      const run = await runSubagent(
        def,
        { parentContext: config?.context, messages, signal: config?.signal, callbacks: config?.callbacks },
        options,
      )
      return run.text
    },
    {
      name: `transfer_to_${def.name}`,
      description: `Hand the conversation to ${def.name}: ${def.description}`,
      schema: z.object({
        note: z.string().max(100_000).optional().describe("Anything the worker should know besides the user's messages"),
      }),
    },
  )
  return markSelfGuarded(t) as DynamicStructuredTool
}
