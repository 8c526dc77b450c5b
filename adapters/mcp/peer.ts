/**
 * How the mTLS peer of an HTTP request reaches `guardMcpServer`.
 *
 * The SDK hands a request handler exactly one thing from the HTTP layer besides the headers:
 * `extra.authInfo` (SDK 1.x; `ctx.http.authInfo` in SDK 2.x), which it takes from `req.auth`
 * (the slot the SDK's own OAuth middleware fills). The host puts the peer there, under `authInfo.extra["io.agent-trust/peer"]`, as an
 * object branded with a `Symbol.for` key. Data never carries a symbol: an OAuth token's
 * claims copied into `authInfo.extra`, a header or a JSON body cannot forge a peer, and a
 * value without the brand is ignored.
 *
 * Subpath: `agent-trust/mcp`.
 */
import type { IncomingMessage } from 'node:http'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { PeerUnauthenticated } from 'agent-trust'
import type { PeerIdentity } from 'agent-trust'

/** The `authInfo.extra` key under which {@link attachPeerIdentity} puts the peer. */
export const PEER_AUTH_KEY = 'io.agent-trust/peer'

const kPeer = Symbol.for('agent-trust.mcp.peer')

type BrandedPeer = PeerIdentity & { readonly [kPeer]: true }

function isBranded(v: unknown): v is BrandedPeer {
  return (
    typeof v === 'object' && v !== null && (v as { [kPeer]?: unknown })[kPeer] === true && typeof (v as PeerIdentity).agentId === 'string'
  )
}

/**
 * What an SDK hands a request handler besides the request: SDK 1.x's `extra` (the HTTP
 * layer's `authInfo` at the top) or SDK 2.x's `ctx` (under `ctx.http.authInfo`).
 */
export type HandlerContext = { readonly authInfo?: AuthInfo } | { readonly http?: { readonly authInfo?: AuthInfo } }

function authInfoOf(extra: HandlerContext | undefined): AuthInfo | undefined {
  if (typeof extra !== 'object' || extra === null) return undefined
  if ('authInfo' in extra) return extra.authInfo
  return 'http' in extra ? extra.http?.authInfo : undefined
}

/**
 * Record the authenticated peer of `req` for the MCP handlers (as `extra.authInfo`). Keeps
 * whatever an OAuth middleware put in `req.auth`; without one, `req.auth` becomes
 * `{ token: '', clientId: <agent id>, scopes: [] }` (no OAuth token: the empty `token`).
 * `serveStreamableHttp({ tls })` calls it for every request; call it yourself when you host
 * the SDK transport behind your own mTLS server.
 */
export function attachPeerIdentity(req: IncomingMessage, peer: PeerIdentity): void {
  if (typeof peer?.agentId !== 'string' || peer.agentId.length === 0) throw new TypeError('attachPeerIdentity: peer.agentId is required')
  const branded: BrandedPeer = Object.freeze({
    agentId: peer.agentId,
    ...(peer.certificateThumbprint === undefined ? {} : { certificateThumbprint: peer.certificateThumbprint }),
    [kPeer]: true as const,
  })
  const r = req as IncomingMessage & { auth?: AuthInfo }
  const base: AuthInfo = r.auth ?? { token: '', clientId: peer.agentId, scopes: [] }
  r.auth = { ...base, extra: { ...base.extra, [PEER_AUTH_KEY]: branded } }
}

/**
 * The mTLS peer the host attached to this request, or `undefined`. This is what
 * `guardMcpServer` uses when no `peerIdentity` hook is given, so a server hosted by
 * `serveStreamableHttp({ tls })` checks presenters and bindings without further set-up.
 */
export function mtlsPeerIdentity(extra: HandlerContext | undefined): PeerIdentity | undefined {
  const v = authInfoOf(extra)?.extra?.[PEER_AUTH_KEY]
  return isBranded(v) ? v : undefined
}

/**
 * Like {@link mtlsPeerIdentity}, but a request without an mTLS peer is denied
 * (`ERR_PEER_UNAUTHENTICATED`): pass it as `guardMcpServer(..., { peerIdentity:
 * requireMtlsPeerIdentity })` so that the same server, if ever exposed without mutual TLS
 * (another transport, a misconfigured host), refuses every call instead of accepting
 * unbound tokens without a presenter check.
 */
export function requireMtlsPeerIdentity(extra: HandlerContext | undefined): PeerIdentity {
  const peer = mtlsPeerIdentity(extra)
  if (peer === undefined)
    throw new PeerUnauthenticated('this server requires mutual TLS: the request has no authenticated peer', {
      details: { rule: 'not-tls' },
    })
  return peer
}

/** The `authInfo.extra` key under which the Streamable HTTP host puts the session's proof hook. */
export const SESSION_AUTH_KEY = 'io.agent-trust/session'

const kSession = Symbol.for('agent-trust.mcp.session')

interface SessionProof {
  readonly [kSession]: () => void
}

/**
 * Give the MCP handlers of `req` a way to tell the host that this session carried a valid
 * capability (the host then no longer counts it as token-less). Branded like the peer: data
 * cannot forge it. Used by `serveStreamableHttp`.
 */
export function attachSessionProof(req: IncomingMessage, prove: () => void): void {
  const r = req as IncomingMessage & { auth?: AuthInfo }
  const proof: SessionProof = Object.freeze({ [kSession]: prove })
  const base: AuthInfo = r.auth ?? { token: '', clientId: '', scopes: [] }
  r.auth = { ...base, extra: { ...base.extra, [SESSION_AUTH_KEY]: proof } }
}

/** Called by the guard after a request was allowed on a verified capability. */
export function proveSession(extra: HandlerContext | undefined): void {
  const v = authInfoOf(extra)?.extra?.[SESSION_AUTH_KEY] as Partial<SessionProof> | undefined
  const prove = typeof v === 'object' && v !== null ? v[kSession] : undefined
  if (typeof prove === 'function') prove()
}
