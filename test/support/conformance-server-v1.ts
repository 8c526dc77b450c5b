/**
 * The conformance server on the MCP TypeScript SDK 1.x (`@modelcontextprotocol/sdk`): a
 * low-level `Server` with a handler for every method the conformance suite's server scenarios
 * call (features in conformance-data.ts).
 */
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js'
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js'
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js'
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

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>

function portOf(extra: Extra): ConformancePort {
  return {
    notify: (method, params) => extra.sendNotification({ method, params } as ServerNotification),
    request: async (method, params) => {
      const schema = method === 'sampling/createMessage' ? CreateMessageResultSchema : ElicitResultSchema
      return (await extra.sendRequest({ method, params } as ServerRequest, schema)) as Record<string, unknown>
    },
    progressToken: extra._meta?.progressToken,
    ...(extra.closeSSEStream === undefined ? {} : { closeStream: extra.closeSSEStream }),
  }
}

export function conformanceServerV1(): Server {
  const server = new Server(SERVER_INFO, { capabilities: CAPABILITIES })
  const subscriptions = new Set<string>()
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS.map((t) => ({ ...t })) as never }))
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    return (await callTool(request.params.name, request.params.arguments ?? {}, portOf(extra))) as never
  })
  server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: RESOURCES }))
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: RESOURCE_TEMPLATES }))
  server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
    const r = readResource(request.params.uri)
    if (r === undefined) throw new McpError(ErrorCode.InvalidParams, 'Resource not found')
    return r as never
  })
  server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    subscriptions.add(request.params.uri)
    return {}
  })
  server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri)
    return {}
  })
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }))
  server.setRequestHandler(GetPromptRequestSchema, async (request) => {
    const r = getPrompt(request.params.name, request.params.arguments ?? {})
    if (r === undefined) throw new McpError(ErrorCode.InvalidParams, 'Prompt not found')
    return r as never
  })
  server.setRequestHandler(SetLevelRequestSchema, async () => ({}))
  server.setRequestHandler(CompleteRequestSchema, async () => COMPLETION)
  return server
}
