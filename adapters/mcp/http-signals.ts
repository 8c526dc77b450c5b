/**
 * The MCP authorization specification's HTTP signals at the Streamable HTTP edge: the RFC
 * 9728 protected-resource metadata document, and a guard denial answered with the denial
 * table's status and `WWW-Authenticate` challenge (RFC 6750 section 3) while the body stays
 * the JSON-RPC error SDK clients read.
 */
import { type ServerResponse } from 'node:http'
import { ERROR_CATALOG } from 'agent-trust'
import type { AgentTrustErrorCode, AgentTrustError } from 'agent-trust'
import type { denialAnswer } from 'agent-trust/http'
import { CAPABILITY_DENIED, CAPABILITY_META_KEY } from './policy.js'
import type { ProtectedResourceMetadataOptions } from './http-options.js'

/** The RFC 9728 section 2 document. */
export function protectedResourceMetadata(resource: string, o: ProtectedResourceMetadataOptions): Record<string, unknown> {
  return {
    resource,
    ...(o.authorizationServers === undefined ? {} : { authorization_servers: [...o.authorizationServers] }),
    ...(o.jwksUri === undefined ? {} : { jwks_uri: o.jwksUri }),
    ...(o.scopesSupported === undefined ? {} : { scopes_supported: [...o.scopesSupported] }),
    // The capability travels in the Agent-Trust-Capability header (or in params._meta, which HTTP does not see).
    bearer_methods_supported: ['header'],
    resource_signing_alg_values_supported: ['ES256'],
    ...(o.resourceName === undefined ? {} : { resource_name: o.resourceName }),
  }
}

export type Challenge = (code: AgentTrustErrorCode, scope: string | undefined) => ReturnType<typeof denialAnswer>

/**
 * The authorization specification's HTTP signals for a guard denial. A POST carrying one
 * JSON-RPC request whose answer is the guard's denial (`-32003`, `data.code` an agent-trust
 * code) is answered with the denial table's status and `WWW-Authenticate` challenge (401
 * `invalid_token`, 403 `insufficient_scope` with `scope`, 503 with `Retry-After`) and the
 * same JSON-RPC error as an `application/json` body. The transport's response head is held
 * back until its first bytes show whether they are that denial; anything else (a result,
 * a notification first, a batch) goes out unchanged.
 */
export function holdForDenial(res: ServerResponse, body: unknown, challenge: Challenge): ServerResponse {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return res
  const { id, method, params } = body as { id?: unknown; method?: unknown; params?: { _meta?: unknown } }
  if ((typeof id !== 'string' && typeof id !== 'number') || typeof method !== 'string') return res
  const meta = params?._meta
  if (typeof meta === 'object' && meta !== null && Object.hasOwn(meta, CAPABILITY_META_KEY)) return res
  const r = res as unknown as Record<'writeHead' | 'flushHeaders' | 'write' | 'end', (...args: unknown[]) => unknown>
  const original = { writeHead: r.writeHead, flushHeaders: r.flushHeaders, write: r.write, end: r.end }
  let head: unknown[] | undefined
  const restore = (): void => {
    Object.assign(r, original)
  }
  const release = (): void => {
    restore()
    if (head !== undefined) original.writeHead.apply(r, head)
  }
  const decide = (chunk: unknown): boolean => {
    const denial = denialIn(chunk, id)
    if (denial === undefined) return false
    const answer = challenge(denial.code, denial.scope)
    restore()
    original.writeHead.call(r, answer.status, answer.headers)
    original.end.call(r, JSON.stringify(denial.message))
    return true
  }
  r.writeHead = (...args: unknown[]) => {
    head = args
    return r
  }
  r.flushHeaders = () => undefined
  r.write = (chunk: unknown, ...rest: unknown[]) => {
    // An SSE comment (the transport's keep-alive while a slow check runs) decides nothing:
    // it is dropped while the head is held, so a late denial still gets its status.
    if (isSseComment(chunk)) {
      const done = rest.find((x) => typeof x === 'function') as (() => void) | undefined
      if (done !== undefined) queueMicrotask(done)
      return true
    }
    if (decide(chunk)) return true
    release()
    return original.write.call(r, chunk, ...rest)
  }
  r.end = (chunk?: unknown, ...rest: unknown[]) => {
    if (chunk !== undefined && typeof chunk !== 'function' && decide(chunk)) return r
    release()
    return original.end.call(r, chunk, ...rest)
  }
  return res
}

/** Whether the bytes are only SSE comment lines (`:` first, WHATWG HTML section 9.2.6) and blank lines. */
export function isSseComment(chunk: unknown): boolean {
  const text = typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : undefined
  if (text === undefined || text.length > 1024) return false
  const lines = text.split(/\r\n|\r|\n/)
  return lines.some((l) => l.startsWith(':')) && lines.every((l) => l === '' || l.startsWith(':'))
}

/** The guard's denial of request `id` in a JSON body or the first SSE event, if that is what the bytes are. */
export function denialIn(
  chunk: unknown,
  id: string | number,
): { code: AgentTrustErrorCode; scope: string | undefined; message: unknown } | undefined {
  const text = typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : undefined
  if (text === undefined || text.length > 64 * 1024) return undefined
  let json = text.trim()
  if (!json.startsWith('{')) {
    const data = json
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
    if (data.length === 0) return undefined
    json = data.join('\n')
  }
  let message: { id?: unknown; error?: { code?: unknown; data?: { code?: unknown; scope?: unknown } } }
  try {
    message = JSON.parse(json) as typeof message
  } catch {
    return undefined
  }
  const code = message?.error?.data?.code
  if (message?.id !== id || message.error?.code !== CAPABILITY_DENIED || typeof code !== 'string' || !Object.hasOwn(ERROR_CATALOG, code))
    return undefined
  const scope = message.error.data?.scope
  return { code: code as AgentTrustErrorCode, scope: typeof scope === 'string' ? scope : undefined, message }
}

export function rpcError(code: number, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null })
}

/** A refused peer, shaped like the guard's denials: `data.code` is the agent-trust code. */
export function rpcDenied(error: AgentTrustError): string {
  const rule = error.details.rule
  return JSON.stringify({
    jsonrpc: '2.0',
    error: {
      code: CAPABILITY_DENIED,
      message: error.message,
      data: { code: error.code, ...(typeof rule === 'string' ? { details: { rule } } : {}) },
    },
    id: null,
  })
}
