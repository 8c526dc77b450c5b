/**
 * Server side: one call turns capability enforcement on for an MCP server.
 *
 * Where the check sits. `McpServer` catches whatever a tool callback throws and turns it
 * into a successful result with `isError: true`; a denial raised there would reach the
 * model as tool output, after the tool had been looked up and its input validated. So the
 * guard wraps the server's request-handler table itself: every request except
 * `initialize` and `ping` passes through the check *before* the SDK's handler (the one
 * `McpServer` installs, or the one you set on a low-level `Server`) sees it, and a denial
 * is a JSON-RPC error (`code` `CAPABILITY_DENIED`, `data.code` the agent-trust code).
 * Handlers registered after the guard are wrapped too, so registration order does not
 * matter, and the table is the same whatever the transport (stdio, Streamable HTTP,
 * in-memory).
 *
 * Subpath: `agent-trust/mcp`.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { McpServer as McpServerV2, Server as ServerV2 } from '@modelcontextprotocol/server'
import { ConfigInvalid, createVerifier, parseManifest, resolveMode, ToolDeclarationSchema, Verifier } from 'agent-trust'
import { fn, instanceOf, parseOptions, withMethods, ToolCatalog } from '#internal'
import { z } from 'zod'
import type { ToolDeclaration } from 'agent-trust'
import { AUDIENCE_CAPABILITY_KEY, CAPABILITY_META_KEY } from './policy.js'
import { mtlsPeerIdentity } from './peer.js'
import { assertV2Dispatch, isV2Protocol } from './server-v2.js'
import type { GuardContext, GuardMcpServerOptions, HostDialect, RawHandler } from './guard-context.js'
import { V1_HOST, V2_HOST, guardHandler, wrapFallback } from './guard-pipeline.js'

export type { GuardMcpServerOptions, McpRequestExtra } from './guard-context.js'
export type { McpRequestContextV2 } from './server-v2.js'
export { capabilityDenied, CapabilityDeniedError } from './guard-pipeline.js'

const kGuarded = Symbol.for('agent-trust.mcp.guarded')

/** The SDK's protocol object under an `McpServer` or a `Server`, with the internals the guard relies on. */
interface ProtocolInternals {
  _requestHandlers?: unknown
  fallbackRequestHandler?: RawHandler
  transport?: unknown
  registerCapabilities?: (capabilities: Record<string, unknown>) => void
  [kGuarded]?: true
}

/**
 * Turn capability enforcement on for an `McpServer` or a low-level `Server`, before or
 * after its tools are registered, before or after it is connected.
 *
 * - `tools/call` needs a token whose `aud` is this server and whose scope is the one the
 *   tool's declared template yields for the call's arguments; undeclared tools are
 *   `execute` with scope `tool:<serverId>:<name>`.
 * - Every other request except `initialize` and `ping` needs a token with scope
 *   `mcp:<serverId>:<method>` (`tools/list` is a `read`); with a manifest, `tools/list`
 *   shows the caller only the tools it may call.
 * - The token is read from `params._meta["io.agent-trust/capability"]`, or on Streamable
 *   HTTP from the `Agent-Trust-Capability` header; it is removed from the request before
 *   the handler sees it.
 * - Every decision, allow or deny, is an audit event.
 *
 * Returns the server it was given. Throws `TypeError`/`ERR_CONFIG_INVALID` on bad options
 * or an SDK it cannot guard (it never runs unguarded silently).
 *
 * @example
 * ```ts
 * import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
 * import { guardMcpServer } from 'agent-trust/mcp'
 *
 * const server = new McpServer({ name: 'agent-database-reader', version: '1.0.0' })
 * server.registerTool('read_documents', { inputSchema: { namespace: z.string() } }, readDocuments)
 * guardMcpServer(server, { serverId: 'agent-database-reader', issuers: [{ issuer: 'agent-trust-authority', jwks }], manifest })
 * await server.connect(transport)
 * ```
 */
export function guardMcpServer<T extends McpServer | Server | McpServerV2 | ServerV2>(target: T, options: GuardMcpServerOptions): T {
  const protocol = protocolOf(target)
  if (protocol[kGuarded] === true)
    throw new ConfigInvalid('guardMcpServer: this server is already guarded', { details: { rule: 'server' } })
  const v2 = isV2Protocol(protocol)
  if (v2) assertV2Dispatch(protocol)
  const handlers = protocol._requestHandlers
  if (!(handlers instanceof Map)) {
    // The request-handler table is an SDK internal (stable across 1.x). Refuse rather than run unguarded.
    throw new TypeError(
      'guardMcpServer: unsupported @modelcontextprotocol/sdk version (no request handler table); the server was not started unguarded',
    )
  }
  const ctx = buildContext(options, v2 ? V2_HOST : V1_HOST)

  const table = new GuardedHandlers((method, handler) => guardHandler(ctx, method, handler))
  for (const [method, handler] of handlers as Map<string, RawHandler>) table.set(method, handler)
  protocol._requestHandlers = table

  let fallback = wrapFallback(ctx, protocol.fallbackRequestHandler)
  Object.defineProperty(protocol, 'fallbackRequestHandler', {
    configurable: true,
    enumerable: true,
    get: () => fallback,
    set: (h: RawHandler | undefined) => {
      fallback = wrapFallback(ctx, h)
    },
  })

  // Advertise the audience so a client wrapper bound to another server id refuses early.
  // Capabilities can only change before connect(); a server guarded later just does not advertise.
  if (protocol.transport === undefined && typeof protocol.registerCapabilities === 'function') {
    protocol.registerCapabilities({ experimental: { [AUDIENCE_CAPABILITY_KEY]: { audience: ctx.serverId, metaKey: CAPABILITY_META_KEY } } })
  }
  protocol[kGuarded] = true
  return target
}

/** A handler table that wraps every handler stored in it, whenever it is stored. */
class GuardedHandlers extends Map<string, RawHandler> {
  readonly #wrap: (method: string, handler: RawHandler) => RawHandler
  constructor(wrap: (method: string, handler: RawHandler) => RawHandler) {
    super()
    this.#wrap = wrap
  }
  override set(method: string, handler: RawHandler): this {
    return super.set(method, this.#wrap(method, handler))
  }
}

function protocolOf(target: McpServer | Server | McpServerV2 | ServerV2): ProtocolInternals {
  if (typeof target !== 'object' || target === null)
    throw new ConfigInvalid('guardMcpServer: expected an McpServer or a Server', { details: { rule: 'server' } })
  // Duck-typed: an app and agent-trust may load different copies of the SDK.
  const inner = (target as { server?: unknown }).server
  if (typeof (target as { registerTool?: unknown }).registerTool === 'function' && typeof inner === 'object' && inner !== null) {
    return inner as ProtocolInternals
  }
  return target as unknown as ProtocolInternals
}

export const GuardMcpServerShape = {
  verifier: instanceOf(Verifier, 'a Verifier (createVerifier)').optional(),
  serverId: z.string().min(1).optional(),
  issuers: z.array(z.unknown()).min(1, 'needs at least one trusted issuer').optional(),
  store: withMethods('check', 'revokeToken', 'revokeAgent').optional(),
  clockToleranceSeconds: z.unknown().optional(),
  manifest: z.unknown().optional(),
  tools: z.array(z.unknown()).optional(),
  audit: withMethods('record').optional(),
  mode: z.string().optional(),
  peerIdentity: fn().optional(),
  acceptHeader: z.boolean().optional(),
  withheld: fn<(tool: string) => boolean>().optional(),
  initializeInstructions: z.boolean().optional(),
}

/** Either a `verifier`, or `serverId` + `issuers` (with `store`, `clockToleranceSeconds`) to build one. */
export function verifierOrIssuers(
  o: { verifier?: Verifier; serverId?: string; issuers?: unknown; store?: unknown; clockToleranceSeconds?: unknown; mode?: string },
  ctx: z.core.$RefinementCtx<unknown>,
): void {
  const v = o.verifier
  if (v !== undefined) {
    if (o.serverId !== undefined && o.serverId !== v.id)
      ctx.addIssue({ code: 'custom', path: ['serverId'], message: "differs from the verifier's id" })
    for (const k of ['issuers', 'store', 'clockToleranceSeconds'] as const)
      if (o[k] !== undefined)
        ctx.addIssue({ code: 'custom', path: [k], message: 'give either "verifier" or issuers/store/clockToleranceSeconds' })
    if (o.mode !== undefined && o.mode !== v.mode)
      ctx.addIssue({ code: 'custom', path: ['mode'], message: "differs from the verifier's mode" })
    return
  }
  if (o.serverId === undefined) ctx.addIssue({ code: 'custom', path: ['serverId'], message: 'is required (or give a "verifier")' })
  if (o.issuers === undefined) ctx.addIssue({ code: 'custom', path: ['issuers'], message: 'is required (or give a "verifier")' })
}

/** {@link GuardMcpServerOptions}, checked once when the server is guarded. */
const GuardMcpServerOptionsSchema = z.strictObject(GuardMcpServerShape).superRefine(verifierOrIssuers)

function buildContext(o: GuardMcpServerOptions, host: HostDialect): GuardContext {
  parseOptions('guardMcpServer', GuardMcpServerOptionsSchema, o)
  let verifier: Verifier
  if (o.verifier !== undefined) {
    verifier = o.verifier
  } else {
    verifier = createVerifier({
      id: o.serverId as string,
      issuers: o.issuers as NonNullable<typeof o.issuers>,
      store: o.store,
      clockToleranceSeconds: o.clockToleranceSeconds,
      manifest: o.manifest,
      audit: o.audit,
      mode: resolveMode(o.mode),
    })
  }
  const serverId = verifier.id
  const manifest = o.manifest === undefined ? undefined : parseManifest(o.manifest)
  let declarations: readonly ToolDeclaration[] = []
  if (manifest !== undefined) {
    const self = manifest.agents.find((a) => a.id === serverId)
    if (self === undefined)
      throw new ConfigInvalid(`the manifest has no agent "${serverId}" (this server's id)`, { details: { agentId: serverId } })
    declarations = self.tools
  }
  if (o.tools !== undefined) declarations = parseTools(o.tools)
  const catalog = new ToolCatalog(serverId, declarations)
  const callers =
    manifest === undefined ? undefined : new Map(manifest.agents.map((a) => [a.id, { grants: a.grants, level: a.trustLevel }] as const))
  return {
    serverId,
    verifier,
    mode: verifier.mode,
    audit: o.audit ?? verifier.audit,
    catalog,
    callers,
    // The default reads only a peer our own host attached (branded); without one it is undefined.
    peerIdentity: o.peerIdentity ?? mtlsPeerIdentity,
    acceptHeader: o.acceptHeader ?? true,
    withheld: o.withheld,
    initializeInstructions: o.initializeInstructions === true,
    host,
  }
}

function parseTools(tools: readonly ToolDeclaration[]): ToolDeclaration[] {
  if (!Array.isArray(tools)) throw new ConfigInvalid('"tools" must be an array of tool declarations')
  const out: ToolDeclaration[] = []
  const names = new Set<string>()
  tools.forEach((t, i) => {
    const r = ToolDeclarationSchema.safeParse(t, { reportInput: false })
    if (!r.success)
      throw new ConfigInvalid(
        `tools[${i}] is not a valid tool declaration: ${r.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`,
      )
    if (names.has(r.data.name)) throw new ConfigInvalid(`tools[${i}].name duplicates another tool`)
    names.add(r.data.name)
    out.push(r.data)
  })
  return out
}
