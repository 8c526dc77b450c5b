/**
 * The gateway: serve an upstream MCP server's tools to agents, with every check of
 * {@link guardMcpServer}, without changing the upstream (a third-party server nobody here
 * can modify).
 *
 * Tool definitions are pinned. The manifest entry of the gateway's server id declares each
 * tool it may serve with a `definitionHash` ({@link toolDefinitionHash}: name, description,
 * input schema). A tool the upstream offers whose current definition hash is not the pinned
 * one (changed since review: a "rug pull"; or never reviewed) is withheld from `tools/list`
 * and refused on `tools/call` with `ERR_TOOL_UNDECLARED`, and reported (callback + audit
 * event) until an operator approves the new hash (edit the manifest, or {@link McpGateway.approve}).
 *
 * What it serves of each tool is exactly what it pins: name, description, input schema.
 * Title, annotations (`readOnlyHint` can make a client auto-approve), output schema, icons
 * and the upstream's `instructions` are dropped: an unpinned field would be a way around
 * the pin. It never forwards the caller's token upstream; of the request's `_meta` only the
 * W3C trace context (`traceparent`, `tracestate`, `baggage`, validated and size-capped)
 * crosses, so one trace spans the agent, the gateway and the upstream.
 *
 * Subpath: `agent-trust/mcp`.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { Client as ClientV2 } from '@modelcontextprotocol/client'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { Tool } from '@modelcontextprotocol/sdk/types.js'
import { ConfigInvalid, createVerifier, parseManifest, resolveMode, ToolUndeclared } from 'agent-trust'
import type { AuditLog, Manifest, ManifestInput, ToolDeclaration, Verifier } from 'agent-trust'
import { allowedEvent, forwardableTraceContext, fn, parseOptions, refusedEvent, withMethods } from '#internal'
import { z } from 'zod'
import { CAPABILITY_DENIED, toolDefinitionHash, type PinnedDefinition } from './policy.js'
import { capabilityDenied, guardMcpServer, GuardMcpServerShape, verifierOrIssuers, type GuardMcpServerOptions } from './server.js'
import { loadSdk, upstreamOf, type Sdk, type Upstream } from './gateway-upstream.js'

export type ToolPinState = 'approved' | 'changed' | 'unpinned' | 'missing'

export interface ToolPinStatus {
  readonly name: string
  /** `approved`: served. `changed`: pinned, but the upstream's definition differs. `unpinned`: never reviewed. `missing`: pinned, gone upstream. */
  readonly state: ToolPinState
  /** The approved hash (manifest or {@link McpGateway.approve}). */
  readonly pinnedHash?: string
  /** The hash of the upstream's current definition. */
  readonly currentHash?: string
  /** The upstream's current definition, for review. */
  readonly definition?: PinnedDefinition
}

export interface McpGatewayOptions extends Omit<GuardMcpServerOptions, 'withheld' | 'tools' | 'manifest'> {
  /**
   * A connected SDK client to the upstream server (stdio or Streamable HTTP), from SDK 1.x
   * (`@modelcontextprotocol/sdk`) or 2.x (`@modelcontextprotocol/client`). The gateway owns its
   * tool-list notifications.
   */
  readonly upstream: Client | ClientV2
  /** The manifest: the gateway's `serverId` entry declares the served tools with their `definitionHash`. */
  readonly manifest: Manifest | ManifestInput
  /** Called when a tool becomes withheld or changes again while withheld (not for approved tools). */
  readonly onReport?: (status: ToolPinStatus) => void
  /**
   * Without a `verifier`: check signatures on agent-trust's crypto thread (see the verifier's
   * `cryptoOffload`). Worth it when serving Streamable HTTP under load; default false.
   */
  readonly cryptoOffload?: boolean
}

/** Upstream tool lists are paged; stop at this many pages (a hostile upstream could page forever). */
const MAX_PAGES = 100

/** {@link McpGatewayOptions}, checked once when the gateway is built. */
const McpGatewayOptionsSchema = z
  .strictObject(GuardMcpServerShape)
  .omit({ withheld: true, tools: true })
  .extend({
    upstream: withMethods<Client | ClientV2>('listTools', 'callTool', 'setNotificationHandler'),
    manifest: z.unknown().refine((m) => m !== undefined, 'is required (the manifest that pins the upstream tools)'),
    onReport: fn().optional(),
    cryptoOffload: z.boolean().optional(),
  })
  .superRefine(verifierOrIssuers)

/**
 * @example
 * ```ts
 * const upstream = new Client({ name: 'gateway', version: '1.0.0' })
 * await upstream.connect(new StdioClientTransport({ command: 'node', args: ['server.js'] }))
 * const gateway = await McpGateway.create({ upstream, serverId: 'everything', manifest, issuers })
 * await gateway.createServer().connect(new StdioServerTransport())
 * ```
 */
export class McpGateway {
  readonly serverId: string
  readonly verifier: Verifier
  readonly #upstream: Upstream
  readonly #manifest: Manifest
  readonly #audit: AuditLog
  readonly #guard: GuardMcpServerOptions
  readonly #onReport: ((s: ToolPinStatus) => void) | undefined
  readonly #pins = new Map<string, string | undefined>()
  #current = new Map<string, { definition: PinnedDefinition; hash: string }>()
  readonly #reported = new Map<string, string>()
  readonly #servers = new Set<Server>()
  #refreshing: Promise<readonly ToolPinStatus[]> | undefined
  /** Change notices received; a refresh confirms the pins only if none arrived after it started. */
  #notices = 0
  /** The notice count the last successful refresh started at. */
  #confirmed = 0
  #again = false
  #closed = false

  readonly #sdk: Sdk

  private constructor(options: McpGatewayOptions, manifest: Manifest, verifier: Verifier, sdk: Sdk) {
    this.#sdk = sdk
    this.#upstream = upstreamOf(options.upstream, sdk)
    this.#manifest = manifest
    this.verifier = verifier
    this.serverId = verifier.id
    this.#audit = options.audit ?? verifier.audit
    this.#onReport = options.onReport
    const self = manifest.agents.find((a) => a.id === this.serverId)
    if (self === undefined)
      throw new ConfigInvalid(`the manifest has no agent "${this.serverId}" (the gateway's server id)`, {
        details: { agentId: this.serverId },
      })
    for (const t of self.tools) this.#pins.set(t.name, t.definitionHash)
    this.#guard = {
      verifier,
      manifest,
      audit: this.#audit,
      peerIdentity: options.peerIdentity,
      acceptHeader: options.acceptHeader,
    }
  }

  /** Build the gateway and read the upstream's tools once (so the first call is already checked). */
  static async create(options: McpGatewayOptions): Promise<McpGateway> {
    parseOptions('McpGateway.create', McpGatewayOptionsSchema, options)
    const manifest = parseManifest(options.manifest)
    let verifier = options.verifier
    if (verifier === undefined) {
      verifier = createVerifier({
        id: options.serverId as string,
        issuers: options.issuers as NonNullable<typeof options.issuers>,
        store: options.store,
        clockToleranceSeconds: options.clockToleranceSeconds,
        manifest,
        audit: options.audit,
        mode: resolveMode(options.mode),
        cryptoOffload: options.cryptoOffload,
      })
    }
    const gateway = new McpGateway(options, manifest, verifier, await loadSdk())
    gateway.#upstream.onToolListChanged(async () => {
      await gateway.#changeNotice()
    })
    await gateway.refresh()
    return gateway
  }

  /**
   * A new guarded server serving the upstream's approved tools. One per downstream
   * connection (an SDK server serves one transport); all share the verifier and the pins.
   */
  createServer(): Server {
    if (this.#closed) throw new TypeError('McpGateway: closed')
    // The upstream's version string is unpinned free text: it is not relayed (nor are its instructions).
    const { Server, types } = this.#sdk
    const server = new Server({ name: this.serverId, version: '0.0.0' }, { capabilities: { tools: { listChanged: true } } })
    server.setRequestHandler(types.ListToolsRequestSchema, async () => {
      await this.refresh()
      const tools: Tool[] = []
      for (const [name, cur] of this.#current) {
        if (this.#approved(name))
          tools.push({ name, description: cur.definition.description, inputSchema: cur.definition.inputSchema as Tool['inputSchema'] })
      }
      return { tools }
    })
    server.setRequestHandler(types.CallToolRequestSchema, async (request, extra) => {
      // The pin holds in every enforcement mode (`audit`/`off` relax capability checks only):
      // an unapproved or unconfirmed definition is never called.
      if (!this.#approved(request.params.name)) {
        throw capabilityDenied(
          new ToolUndeclared('the tool is withheld: its definition is not the approved one, or not yet confirmed after a change', {
            details: { rule: 'pin' },
          }),
        )
      }
      // A fresh request: only the name, the arguments and valid trace context cross; never the caller's token or other _meta.
      const trace = forwardableTraceContext(request.params._meta)
      const params = {
        name: request.params.name,
        arguments: request.params.arguments,
        ...(trace === undefined ? {} : { _meta: { ...trace } }),
      }
      try {
        return await this.#upstream.callTool(params, extra.signal)
      } catch (e) {
        throw upstreamError(e)
      }
    })
    guardMcpServer(server, { ...this.#guard, withheld: (name) => !this.#approved(name) })
    this.#servers.add(server)
    server.onclose = () => {
      this.#servers.delete(server)
    }
    return server
  }

  /** Re-read the upstream's tools, compare with the pins, report what is withheld. */
  refresh(): Promise<readonly ToolPinStatus[]> {
    // One refresh at a time; callers that arrive meanwhile share its result.
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined
      // A change notice arrived during that refresh: what it read may predate the change.
      if (this.#again && !this.#closed) {
        this.#again = false
        this.refresh().catch(() => undefined)
      }
    })
    return this.#refreshing
  }

  /**
   * `tools/list_changed` from the upstream: every tool is withheld until a listing that
   * started after this notice confirms its pin. A notice during a refresh schedules another.
   */
  async #changeNotice(): Promise<void> {
    this.#notices++
    this.#audit.record(
      refusedEvent('tool_call', 'ERR_TOOL_UNDECLARED', {
        destination: this.serverId,
        note: 'upstream tools changed: withheld until re-read',
      }),
    )
    for (const server of this.#servers) server.sendToolListChanged().catch(() => undefined)
    if (this.#refreshing !== undefined) this.#again = true
    await this.refresh().catch(() => undefined)
  }

  async #refresh(): Promise<readonly ToolPinStatus[]> {
    const started = this.#notices
    try {
      return await this.#read(started)
    } catch (e) {
      this.#audit.record(
        refusedEvent('tool_call', 'ERR_TOOL_UNDECLARED', {
          destination: this.serverId,
          note: `upstream tools could not be read${this.#confirmed === this.#notices ? '' : ': changed tools stay withheld'}`,
        }),
      )
      throw e
    }
  }

  async #read(started: number): Promise<readonly ToolPinStatus[]> {
    const before = this.#approvedSet()
    const current = new Map<string, { definition: PinnedDefinition; hash: string }>()
    let cursor: string | undefined
    for (let page = 0; page < MAX_PAGES; page++) {
      const r = await this.#upstream.listTools(cursor)
      for (const t of r.tools) {
        const definition: PinnedDefinition = {
          name: t.name,
          ...(t.description === undefined ? {} : { description: t.description }),
          inputSchema: t.inputSchema,
        }
        current.set(t.name, { definition, hash: toolDefinitionHash(definition) })
      }
      cursor = r.nextCursor
      if (cursor === undefined) break
    }
    this.#current = current
    if (started === this.#notices) this.#confirmed = started
    else this.#again = true
    const statuses = this.status()
    for (const s of statuses) this.#report(s)
    const after = this.#approvedSet()
    if (before !== after) for (const server of this.#servers) server.sendToolListChanged().catch(() => undefined)
    return statuses
  }

  /** Every tool the upstream offers or the manifest pins, with its state and hashes. */
  status(): ToolPinStatus[] {
    const out: ToolPinStatus[] = []
    for (const [name, cur] of this.#current) {
      const pinned = this.#pins.get(name)
      const state: ToolPinState = pinned === undefined ? 'unpinned' : pinned === cur.hash ? 'approved' : 'changed'
      out.push({ name, state, ...(pinned === undefined ? {} : { pinnedHash: pinned }), currentHash: cur.hash, definition: cur.definition })
    }
    for (const [name, pinned] of this.#pins) {
      if (!this.#current.has(name)) out.push({ name, state: 'missing', ...(pinned === undefined ? {} : { pinnedHash: pinned }) })
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /**
   * Tool declarations for the manifest with the upstream's current hashes, for an operator
   * to review and paste (operation and scope kept from the manifest; new tools default to
   * `execute`, the safe reading of an unknown tool).
   */
  proposedDeclarations(): ToolDeclaration[] {
    const declared = new Map((this.#manifest.agents.find((a) => a.id === this.serverId)?.tools ?? []).map((t) => [t.name, t]))
    return [...this.#current.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, cur]) => {
        const d = declared.get(name)
        return {
          name,
          operation: d?.operation ?? 'execute',
          ...(d?.scope === undefined ? {} : { scope: d.scope }),
          definitionHash: cur.hash,
        }
      })
  }

  /** An operator approves a reviewed definition at run time (same effect as editing the manifest). */
  approve(name: string, definitionHash: string, options: { by?: string } = {}): void {
    if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(definitionHash))
      throw new TypeError('approve(name, definitionHash): definitionHash is a base64url SHA-256')
    this.#pins.set(name, definitionHash)
    this.#reported.delete(name)
    this.#audit.record(
      allowedEvent('tool_call', {
        origin: options.by,
        destination: this.serverId,
        tool: name,
        note: `definition approved ${definitionHash}`,
      }),
    )
    for (const server of this.#servers) server.sendToolListChanged().catch(() => undefined)
  }

  /** Close every downstream server built by {@link createServer}; the upstream client is the caller's. */
  async close(): Promise<void> {
    this.#closed = true
    const servers = [...this.#servers]
    this.#servers.clear()
    await Promise.allSettled(servers.map((s) => s.close()))
  }

  #approved(name: string): boolean {
    if (this.#confirmed !== this.#notices) return false
    const cur = this.#current.get(name)
    return cur !== undefined && this.#pins.get(name) === cur.hash
  }

  #approvedSet(): string {
    return [...this.#current.keys()]
      .filter((n) => this.#approved(n))
      .sort()
      .join('\n')
  }

  #report(s: ToolPinStatus): void {
    if (s.state === 'approved') {
      this.#reported.delete(s.name)
      return
    }
    const key = `${s.state}:${s.currentHash ?? ''}`
    if (this.#reported.get(s.name) === key) return
    this.#reported.set(s.name, key)
    this.#audit.record(
      refusedEvent('tool_call', 'ERR_TOOL_UNDECLARED', {
        destination: this.serverId,
        tool: s.name,
        note: s.state === 'missing' ? 'definition missing upstream' : `definition ${s.state} ${s.currentHash ?? ''}`.trim(),
      }),
    )
    this.#onReport?.(s)
  }
}

/** JSON-RPC "internal error" (JSON-RPC 2.0 section 5.1): what the gateway answers for an upstream refusal shaped like its own. */
const UPSTREAM_REFUSED = -32603

/**
 * An upstream's error as the gateway passes it on. The upstream is someone else's server: an
 * error of its own that looks like an agent-trust denial (the denial code, or an `ERR_` code in
 * `data`) must not reach the caller as one, where the HTTP edge would turn it into a 401, 403
 * or 503 challenge with a scope the upstream chose and a client would step up for it. It
 * becomes an internal error without `data`; every other upstream error passes unchanged.
 */
function upstreamError(e: unknown): unknown {
  if (typeof e !== 'object' || e === null) return e
  const err = e as { code?: unknown; message?: unknown; data?: { code?: unknown } }
  const dataCode = typeof err.data === 'object' && err.data !== null ? err.data.code : undefined
  if (err.code !== CAPABILITY_DENIED && !(typeof dataCode === 'string' && dataCode.startsWith('ERR_'))) return e
  const message = typeof err.message === 'string' ? err.message.slice(0, 200) : ''
  return Object.assign(new Error(`the upstream server refused the call: ${message}`), { code: UPSTREAM_REFUSED })
}
