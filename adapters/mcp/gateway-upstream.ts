/**
 * The gateway's view of its upstream client, the same for both SDK majors, and the SDK 1.x
 * parts its downstream server is built from (loaded on first use).
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { Client as ClientV2 } from '@modelcontextprotocol/client'
import type { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type * as SdkTypes from '@modelcontextprotocol/sdk/types.js'
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js'
import { ConfigInvalid } from 'agent-trust'
import { isV2Protocol } from './server-v2.js'

/** What the gateway asks of its upstream client, the same for both SDK majors. */
export interface Upstream {
  onToolListChanged(handler: () => Promise<void>): void
  listTools(cursor: string | undefined): Promise<{ tools: Tool[]; nextCursor?: string }>
  callTool(
    params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> },
    signal: AbortSignal,
  ): Promise<CallToolResult>
}

/** The SDK 1.x parts the gateway serves with (its downstream is an SDK 1.x `Server`, which any client can talk to). */
export interface Sdk {
  readonly Server: typeof Server
  readonly types: typeof SdkTypes
}
let sdk: Promise<Sdk> | undefined

/** Loaded on first use, so that `agent-trust/mcp` loads without SDK 1.x installed. */
export function loadSdk(): Promise<Sdk> {
  sdk ??= Promise.all([import('@modelcontextprotocol/sdk/server/index.js'), import('@modelcontextprotocol/sdk/types.js')]).then(
    ([server, types]) => ({ Server: server.Server, types }),
    () => {
      sdk = undefined
      throw new ConfigInvalid('McpGateway serves through @modelcontextprotocol/sdk (1.x); install it', { details: { rule: 'sdk-gateway' } })
    },
  )
  return sdk
}

export function upstreamOf(client: Client | ClientV2, sdk: Sdk): Upstream {
  if (!isV2Protocol(client)) {
    const v1 = client as Client
    return {
      onToolListChanged: (handler) => v1.setNotificationHandler(sdk.types.ToolListChangedNotificationSchema, handler),
      listTools: (cursor) => v1.listTools(cursor === undefined ? undefined : { cursor }),
      callTool: (params, signal) => v1.callTool(params, undefined, { signal }) as Promise<CallToolResult>,
    }
  }
  const v2 = client as ClientV2
  return {
    onToolListChanged: (handler) => v2.setNotificationHandler('notifications/tools/list_changed', handler),
    // Never a cached listing: the pins are checked against what the upstream serves now.
    listTools: (cursor) =>
      v2.listTools(cursor === undefined ? undefined : { cursor }, { cacheMode: 'bypass' }) as Promise<{
        tools: Tool[]
        nextCursor?: string
      }>,
    callTool: (params, signal) => v2.callTool(params, { signal }) as Promise<CallToolResult>,
  }
}
