/**
 * The conformance server on the MCP TypeScript SDK 2.x (`@modelcontextprotocol/server`): the
 * same handlers and answers as conformance-server-v1.ts, on a 2.x low-level `Server`.
 */
import { ProtocolError, ProtocolErrorCode, Server } from '@modelcontextprotocol/server'
import type { ServerContext } from '@modelcontextprotocol/server'
import {
  callTool,
  CAPABILITIES,
  COMPLETION,
  getPrompt,
  PROMPTS,
  readResource,
  RESOURCE_TEMPLATES,
  RESOURCES,
  SERVER_INFO,
  TOOLS,
  type ConformancePort,
} from './conformance-data.js'

function portOf(ctx: ServerContext): ConformancePort {
  const closeSSE = ctx.http?.closeSSE
  return {
    notify: (method, params) => ctx.mcpReq.notify({ method, params }),
    request: async (method, params) => (await ctx.mcpReq.send({ method, params })) as unknown as Record<string, unknown>,
    progressToken: ctx.mcpReq._meta?.progressToken,
    ...(closeSSE === undefined ? {} : { closeStream: closeSSE }),
  }
}

export function conformanceServerV2(): Server {
  const server = new Server(SERVER_INFO, { capabilities: CAPABILITIES })
  const subscriptions = new Set<string>()
  server.setRequestHandler('tools/list', async () => ({ tools: TOOLS.map((t) => ({ ...t })) as never }))
  server.setRequestHandler('tools/call', async (request, ctx) => {
    return (await callTool(request.params.name, request.params.arguments ?? {}, portOf(ctx))) as never
  })
  server.setRequestHandler('resources/list', async () => ({ resources: RESOURCES }))
  server.setRequestHandler('resources/templates/list', async () => ({ resourceTemplates: RESOURCE_TEMPLATES }))
  server.setRequestHandler('resources/read', async (request) => {
    const r = readResource(request.params.uri)
    if (r === undefined) throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'Resource not found')
    return r as never
  })
  server.setRequestHandler('resources/subscribe', async (request) => {
    subscriptions.add(request.params.uri)
    return {}
  })
  server.setRequestHandler('resources/unsubscribe', async (request) => {
    subscriptions.delete(request.params.uri)
    return {}
  })
  server.setRequestHandler('prompts/list', async () => ({ prompts: PROMPTS }))
  server.setRequestHandler('prompts/get', async (request) => {
    const r = getPrompt(request.params.name, request.params.arguments ?? {})
    if (r === undefined) throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'Prompt not found')
    return r as never
  })
  server.setRequestHandler('logging/setLevel', async () => ({}))
  server.setRequestHandler('completion/complete', async () => COMPLETION)
  return server
}
