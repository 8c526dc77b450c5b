/**
 * The set-up every in-memory MCP guard test shares, whichever SDK major it drives: a fresh
 * authority, replay store, audit log and tool log per test; `guard` with the test world's
 * defaults; `connect` over the SDK's own linked in-memory transports; everything opened is
 * closed after each test.
 */
import { afterEach, beforeEach } from 'vitest'
import { Authority, MemoryAuditLog, MemoryReplayRevocationStore } from 'agent-trust'
import { CAPABILITY_DENIED, guardMcpServer, type GuardMcpServerOptions } from 'agent-trust/mcp'
import { CONTEXT, MANIFEST, META_KEY, SERVER_ID, type ToolLog } from './mcp-world.js'

interface Closeable {
  close(): Promise<unknown> | unknown
}

/** A server or client of either SDK major: connects to a transport, closes. */
interface Endpoint extends Closeable {
  connect(transport: never): Promise<unknown>
}

export interface McpWorld {
  readonly authority: Authority
  readonly store: MemoryReplayRevocationStore
  readonly audit: MemoryAuditLog
  readonly log: ToolLog
}

export interface McpKit {
  /** Guard with this test's authority, store, manifest and audit log, in `enforce`, unless `over` says otherwise. */
  guard<T extends Parameters<typeof guardMcpServer>[0]>(server: T, over?: Partial<GuardMcpServerOptions>): T
  /** Link `client` to `server` with the SDK's `InMemoryTransport.createLinkedPair`; both close after the test. */
  connect<C extends Endpoint>(server: Endpoint, client: C, createLinkedPair: () => [unknown, unknown]): Promise<C>
  /** Close these after the test. */
  track(...closeables: Closeable[]): void
  /** From here on in this test, `guard` and `mintRead` use this authority (one created with another manifest). */
  useAuthority(authority: Authority): void
  /** A read token for the summarizer on the test server's namespace tool. */
  mintRead(namespace?: string, over?: Partial<Parameters<Authority['mint']>[0]>): Promise<string>
}

/** Call a tool with `token` in `_meta` (left out when undefined), on a client of either SDK major. */
export function callWithToken<R>(
  client: { callTool(request: { name: string; arguments: Record<string, unknown>; _meta?: Record<string, unknown> }): Promise<R> },
  token: unknown,
  args: Record<string, unknown> = { namespace: 'user-123' },
  name = 'read_documents',
): Promise<R> {
  return client.callTool({ name, arguments: args, ...(token === undefined ? {} : { _meta: { [META_KEY]: token } }) })
}

/** The JSON-RPC error a guarded server answers for a refusal with this code. */
export const deniedWith = (code: string) => ({ code: CAPABILITY_DENIED, data: { code } })

/** Register the per-test world; `onWorld` receives each test's fresh world before the test runs. */
export function useMcpKit(onWorld: (world: McpWorld) => void): McpKit {
  let world: McpWorld | undefined
  const open: Closeable[] = []
  beforeEach(async () => {
    const store = new MemoryReplayRevocationStore()
    world = { store, audit: new MemoryAuditLog(), authority: await Authority.create({ manifest: MANIFEST, store }), log: { calls: [] } }
    onWorld(world)
  })
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map(async (c) => c.close()))
  })
  const current = (): McpWorld => {
    if (world === undefined) throw new Error('the MCP test world exists only inside a test')
    return world
  }
  return {
    guard: (server, over = {}) => {
      const w = current()
      return guardMcpServer(server, {
        serverId: SERVER_ID,
        issuers: [w.authority.trustedIssuer()],
        store: w.store,
        manifest: MANIFEST,
        audit: w.audit,
        mode: 'enforce',
        ...over,
      })
    },
    connect: async (server, client, createLinkedPair) => {
      const [clientSide, serverSide] = createLinkedPair()
      await server.connect(serverSide as never)
      await client.connect(clientSide as never)
      open.push(client, server)
      return client
    },
    track: (...closeables) => {
      open.push(...closeables)
    },
    useAuthority: (authority) => {
      world = { ...current(), authority }
    },
    mintRead: (namespace = 'user-123', over = {}) =>
      current().authority.mint({
        subject: 'agent-summarizer-v2',
        audience: SERVER_ID,
        scope: [`db:read:documents:namespace:${namespace}`],
        operation: 'read',
        context: CONTEXT,
        ...over,
      }),
  }
}
