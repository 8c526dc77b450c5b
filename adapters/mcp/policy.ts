/**
 * The MCP-specific decisions, pure and free of I/O: where the token travels, which scope
 * and operation each MCP method needs, whether a caller may call a tool (for filtering
 * `tools/list`), and the hash that pins a tool definition. The server guard, the client
 * wrapper and the gateway all decide through these functions, so they cannot disagree.
 */
import { isExactScope, permitsOperation } from 'agent-trust'
import { canonicalJson, sha256b64url } from '#internal'
import type { Operation, ResolvedTool, TrustLevel } from 'agent-trust'

/**
 * The `params._meta` key that carries the capability token on every transport.
 *
 * A reverse-DNS prefix as the MCP `_meta` naming rules ask (`io.agent-trust/`), so it can
 * never collide with keys the protocol reserves (`io.modelcontextprotocol/...`) or with an
 * application's own keys.
 */
export const CAPABILITY_META_KEY = 'io.agent-trust/capability'

/**
 * The HTTP header a Streamable HTTP client may use instead of `_meta` (lower case, as Node
 * and the SDK's `requestInfo.headers` present it). Never `Authorization`: that header
 * belongs to the server's own OAuth (MCP authorization spec), and mixing the two would let
 * an OAuth layer forward or log our token, or our guard consume a token meant for OAuth.
 */
export const CAPABILITY_HEADER = 'agent-trust-capability'

/**
 * The `_meta` keys of a `Tool` entry in `tools/list` that advertise what calling it needs:
 * the scope template (e.g. `tool:db:read:{namespace}`; placeholders are filled from the
 * call's arguments) and the operation (`read`, `write`, `execute`, ...). Clients use them
 * to ask the authority for the right capability before the first call.
 */
export const TOOL_SCOPE_META_KEY = 'io.agent-trust/scope'
export const TOOL_OPERATION_META_KEY = 'io.agent-trust/operation'

/**
 * The key under `capabilities.experimental` where a guarded server advertises its audience,
 * so a client wrapper bound to another server id notices before it mints anything.
 */
export const AUDIENCE_CAPABILITY_KEY = 'io.agent-trust'

/**
 * JSON-RPC `error.code` of every agent-trust denial (implementation-defined server error
 * range -32000..-32099, avoiding the SDK's -32000/-32001 and MCP's -32002/-32042). The
 * stable agent-trust code is in `error.data.code`.
 */
export const CAPABILITY_DENIED = -32003

/** Requests that carry no token: the handshake and liveness. They reveal no tool or data. */
export const UNGUARDED_METHODS: ReadonlySet<string> = new Set(['initialize', 'ping'])

const READ_METHODS: ReadonlySet<string> = new Set([
  'tools/list',
  'server/discover',
  'subscriptions/listen',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'tasks/get',
  'tasks/list',
  'tasks/result',
])
const WRITE_METHODS: ReadonlySet<string> = new Set(['resources/subscribe', 'resources/unsubscribe', 'logging/setLevel', 'tasks/cancel'])

/** The operation of an MCP method other than `tools/call`: reads, state changes, anything else executes. */
export function methodOperation(method: string): Operation {
  if (READ_METHODS.has(method)) return 'read'
  if (WRITE_METHODS.has(method)) return 'write'
  return 'execute'
}

/**
 * Methods that need another method's scope. `server/discover` (protocol revision
 * 2026-07-28) tells what a server offers, as `tools/list` does: the same grant covers both.
 */
const SCOPE_OF_METHOD: ReadonlyMap<string, string> = new Map([['server/discover', 'tools/list']])

/**
 * The exact scope an MCP method other than `tools/call` requires on server `serverId`:
 * `mcp:<serverId>:<method>` (for example `mcp:agent-database-reader:tools/list`);
 * `server/discover` needs the `tools/list` scope. Grant `mcp:*:tools/list` to let an agent
 * discover tools on every server. `undefined` when the method name cannot form a scope (the
 * call is then denied with `ERR_SCOPE_INVALID`).
 */
export function methodScope(serverId: string, method: string): string | undefined {
  const scope = `mcp:${serverId}:${SCOPE_OF_METHOD.get(method) ?? method}`
  return isExactScope(scope) ? scope : undefined
}

/**
 * Could an agent with `grants` at `level` obtain a token for some call of `tool`? Used to
 * filter `tools/list`. A `{arg}` segment of the tool's template stands for any value, so
 * grant `db:read:documents:namespace:user-123` makes `db:read:documents:namespace:{namespace}`
 * callable (with that one namespace), and so does `db:read:*:namespace:*`.
 */
export function mayCall(grants: readonly string[], level: TrustLevel, tool: ResolvedTool): boolean {
  if (!permitsOperation(level, tool.operation)) return false
  const template = tool.scope.source.split(':')
  const placeholder = new Set(tool.scope.placeholders.map((p) => `{${p}}`))
  for (const grant of grants) {
    const g = grant.split(':')
    if (g.length !== template.length) continue
    let ok = true
    for (let i = 0; i < g.length; i++) {
      const t = template[i] as string
      if (g[i] !== '*' && !placeholder.has(t) && g[i] !== t) {
        ok = false
        break
      }
    }
    if (ok) return true
  }
  return false
}

/** The parts of a tool definition that are pinned (and the only parts the gateway serves). */
export interface PinnedDefinition {
  readonly name: string
  readonly description?: string
  readonly inputSchema: Readonly<Record<string, unknown>>
}

/**
 * The pin of a tool definition: base64url SHA-256 of the canonical JSON (keys sorted) of
 * its name, description and input schema. Key order and absent descriptions do not change
 * it; any change of wording, property or constraint does.
 */
export function toolDefinitionHash(tool: PinnedDefinition): string {
  return sha256b64url(canonicalJson({ name: tool.name, description: tool.description, inputSchema: tool.inputSchema }))
}
