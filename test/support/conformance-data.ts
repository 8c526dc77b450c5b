/**
 * The conformance server's features, free of any MCP SDK import: what the server scenarios of
 * `@modelcontextprotocol/conformance` call (tools, resources, a resource template, prompts,
 * logging, completion) and how each answers. conformance-server-v1.ts and
 * conformance-server-v2.ts put these on a low-level `Server` of each SDK major, so both majors
 * serve byte-for-byte the same answers and only the guard around them differs.
 */

/** What a tool needs of the request it runs in: related notifications and server-to-client requests. */
export interface ConformancePort {
  /** A notification on the request's own stream (progress, log messages). */
  notify(method: string, params: Record<string, unknown>): Promise<void>
  /** A server-to-client request on the request's own stream (sampling, elicitation). */
  request(method: 'sampling/createMessage' | 'elicitation/create', params: Record<string, unknown>): Promise<Record<string, unknown>>
  /** The request's progress token, if the client sent one. */
  readonly progressToken: string | number | undefined
  /** End the request's SSE stream early (the client resumes it with Last-Event-ID), where the host supports it. */
  closeStream?(): void
}

export const SERVER_INFO = { name: 'agent-trust-conformance-server', version: '1.0.0' } as const

export const CAPABILITIES = {
  tools: { listChanged: true },
  resources: { subscribe: true, listChanged: true },
  prompts: { listChanged: true },
  logging: {},
  completions: {},
} as const

// A 1x1 PNG and a minimal WAV file.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=='
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA='

type JsonObject = Record<string, unknown>
const noArgs = { type: 'object', properties: {} } as const
const oneString = (name: string, description: string): JsonObject => ({
  type: 'object',
  properties: { [name]: { type: 'string', description } },
  required: [name],
})

/** `tools/list`: every tool the scenarios call, with its input schema as JSON Schema. */
export const TOOLS: ReadonlyArray<{ name: string; description: string; inputSchema: JsonObject }> = [
  { name: 'test_simple_text', description: 'Answers with one text block', inputSchema: noArgs },
  { name: 'test_image_content', description: 'Answers with one PNG image', inputSchema: noArgs },
  { name: 'test_audio_content', description: 'Answers with one WAV clip', inputSchema: noArgs },
  { name: 'test_embedded_resource', description: 'Answers with an embedded text resource', inputSchema: noArgs },
  { name: 'test_multiple_content_types', description: 'Answers with text, an image and a resource', inputSchema: noArgs },
  { name: 'test_tool_with_logging', description: 'Sends three log messages while it runs', inputSchema: noArgs },
  { name: 'test_tool_with_progress', description: 'Reports progress three times while it runs', inputSchema: noArgs },
  { name: 'test_error_handling', description: 'Always fails with a tool error', inputSchema: noArgs },
  { name: 'test_reconnection', description: 'Ends its SSE stream before answering (SEP-1699)', inputSchema: noArgs },
  { name: 'test_sampling', description: 'Asks the client for an LLM completion', inputSchema: oneString('prompt', 'The prompt') },
  { name: 'test_elicitation', description: 'Asks the user for input', inputSchema: oneString('message', 'What to ask') },
  { name: 'test_elicitation_sep1034_defaults', description: 'Asks for input with defaults (SEP-1034)', inputSchema: noArgs },
  { name: 'test_elicitation_sep1330_enums', description: 'Asks for input with every enum form (SEP-1330)', inputSchema: noArgs },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Takes a JSON Schema 2020-12 input (SEP-1613)',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
  },
]

const SEP1034_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'Name', default: 'John Doe' },
    age: { type: 'integer', description: 'Age', default: 30 },
    score: { type: 'number', description: 'Score', default: 95.5 },
    status: { type: 'string', description: 'Status', enum: ['active', 'inactive', 'pending'], default: 'active' },
    verified: { type: 'boolean', description: 'Verified', default: true },
  },
  required: [],
}

const titled = (titles: readonly string[]) => titles.map((title, i) => ({ const: `value${i + 1}`, title }))
const SEP1330_SCHEMA = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', description: 'One option', enum: ['option1', 'option2', 'option3'] },
    titledSingle: { type: 'string', description: 'One titled option', oneOf: titled(['First Option', 'Second Option', 'Third Option']) },
    legacyEnum: {
      type: 'string',
      description: 'One option (enumNames)',
      enum: ['opt1', 'opt2', 'opt3'],
      enumNames: ['Option One', 'Option Two', 'Option Three'],
    },
    untitledMulti: {
      type: 'array',
      description: 'Several options',
      minItems: 1,
      maxItems: 3,
      items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    },
    titledMulti: {
      type: 'array',
      description: 'Several titled options',
      minItems: 1,
      maxItems: 3,
      items: { anyOf: titled(['First Choice', 'Second Choice', 'Third Choice']) },
    },
  },
  required: [],
}

const text = (t: string) => ({ content: [{ type: 'text', text: t }] })
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** `tools/call`. An unknown tool or a failing one is a tool error (`isError`), as the SDKs' `McpServer` answers. */
export async function callTool(name: string, args: JsonObject, port: ConformancePort): Promise<JsonObject> {
  switch (name) {
    case 'test_simple_text':
      return text('A simple text answer.')
    case 'test_image_content':
      return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }
    case 'test_audio_content':
      return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }
    case 'test_embedded_resource':
      return { content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'Embedded.' } }] }
    case 'test_multiple_content_types':
      return {
        content: [
          { type: 'text', text: 'Three kinds of content:' },
          { type: 'image', data: PNG, mimeType: 'image/png' },
          { type: 'resource', resource: { uri: 'test://mixed-content', mimeType: 'application/json', text: '{"value":1}' } },
        ],
      }
    case 'test_tool_with_logging':
      for (const step of ['started', 'working', 'done']) {
        await port.notify('notifications/message', { level: 'info', logger: 'conformance', data: `tool ${step}` })
        await sleep(20)
      }
      return text('Logged three messages.')
    case 'test_tool_with_progress': {
      const progressToken = port.progressToken ?? 0
      for (const progress of [0, 50, 100]) {
        await port.notify('notifications/progress', { progressToken, progress, total: 100, message: `${progress}%` })
        await sleep(20)
      }
      return text(String(progressToken))
    }
    case 'test_error_handling':
      return { isError: true, content: [{ type: 'text', text: 'This tool always fails.' }] }
    case 'test_reconnection':
      port.closeStream?.()
      await sleep(100)
      return text('Answered after the stream was resumed.')
    case 'test_sampling': {
      const r = await port.request('sampling/createMessage', {
        messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt ?? '') } }],
        maxTokens: 100,
      })
      const content = r.content as { text?: unknown } | undefined
      return text(`LLM response: ${String(content?.text ?? '')}`)
    }
    case 'test_elicitation': {
      const r = await port.request('elicitation/create', {
        message: String(args.message ?? ''),
        requestedSchema: oneString('response', 'Your answer'),
      })
      return text(`User response: action=${String(r.action)}, content=${JSON.stringify(r.content ?? {})}`)
    }
    case 'test_elicitation_sep1034_defaults':
    case 'test_elicitation_sep1330_enums': {
      const requestedSchema = name === 'test_elicitation_sep1034_defaults' ? SEP1034_SCHEMA : SEP1330_SCHEMA
      const r = await port.request('elicitation/create', { message: 'Please fill in the form', requestedSchema })
      return text(`Elicitation completed: action=${String(r.action)}, content=${JSON.stringify(r.content ?? {})}`)
    }
    case 'json_schema_2020_12_tool':
      return text(`Called with ${JSON.stringify(args)}`)
    default:
      return { isError: true, content: [{ type: 'text', text: `Unknown tool ${name.slice(0, 64)}` }] }
  }
}

export const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', title: 'Static text', mimeType: 'text/plain' },
  { uri: 'test://static-binary', name: 'static-binary', title: 'Static binary', mimeType: 'image/png' },
  { uri: 'test://watched-resource', name: 'watched-resource', title: 'Watched resource', mimeType: 'text/plain' },
]

export const RESOURCE_TEMPLATES = [
  { uriTemplate: 'test://template/{id}/data', name: 'template', title: 'Template', mimeType: 'application/json' },
]

/** `resources/read`, or undefined for an unknown URI. */
export function readResource(uri: string): JsonObject | undefined {
  if (uri === 'test://static-text') return { contents: [{ uri, mimeType: 'text/plain', text: 'The static text resource.' }] }
  if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: PNG }] }
  if (uri === 'test://watched-resource') return { contents: [{ uri, mimeType: 'text/plain', text: 'Watched content.' }] }
  const m = /^test:\/\/template\/([^/]{1,64})\/data$/.exec(uri)
  if (m !== null) return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id: m[1], templateTest: true }) }] }
  return undefined
}

export const PROMPTS = [
  { name: 'test_simple_prompt', description: 'A prompt without arguments' },
  {
    name: 'test_prompt_with_arguments',
    description: 'A prompt with two arguments',
    arguments: [
      { name: 'arg1', description: 'First argument', required: true },
      { name: 'arg2', description: 'Second argument', required: true },
    ],
  },
  {
    name: 'test_prompt_with_embedded_resource',
    description: 'A prompt with an embedded resource',
    arguments: [{ name: 'resourceUri', description: 'The resource to embed', required: true }],
  },
  { name: 'test_prompt_with_image', description: 'A prompt with an image' },
]

/** `prompts/get`, or undefined for an unknown prompt. */
export function getPrompt(name: string, args: Record<string, string>): JsonObject | undefined {
  const user = (content: JsonObject) => ({ role: 'user', content })
  switch (name) {
    case 'test_simple_prompt':
      return { messages: [user({ type: 'text', text: 'A simple prompt.' })] }
    case 'test_prompt_with_arguments':
      return { messages: [user({ type: 'text', text: `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'` })] }
    case 'test_prompt_with_embedded_resource':
      return {
        messages: [
          user({ type: 'resource', resource: { uri: args.resourceUri ?? '', mimeType: 'text/plain', text: 'Embedded.' } }),
          user({ type: 'text', text: 'Please read the resource above.' }),
        ],
      }
    case 'test_prompt_with_image':
      return { messages: [user({ type: 'image', data: PNG, mimeType: 'image/png' }), user({ type: 'text', text: 'Describe it.' })] }
    default:
      return undefined
  }
}

/** `completion/complete`: no suggestions. */
export const COMPLETION = { completion: { values: [], total: 0, hasMore: false } }
