/** Mutual TLS for the Streamable HTTP host: the HTTPS server, its peer checks, and credential rotation. */
import { X509Certificate } from 'node:crypto'
import { type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { peerRefused } from '#internal'
import type { AgentTrustError } from 'agent-trust'
import type { TlsCredentials } from '#internal'
import type { StreamableHttpTlsOptions, TlsContext } from './http-options.js'

/**
 * The HTTPS server and its peer checks. `agent-trust/identity` (and with it
 * `@peculiar/x509`) is loaded only here, so plain-HTTP users of `agent-trust/mcp` need neither.
 */
export async function setUpTls(
  tls: StreamableHttpTlsOptions,
  listener: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<TlsContext> {
  if (typeof tls !== 'object' || tls === null) throw new TypeError('serveStreamableHttp: tls must be an object')
  const identity = await import('agent-trust/identity')
  const { credentials, revocations, audit, now } = tls
  const serverOptions = identity.mtlsServerOptions(credentials) // TypeError for anything but PEM credentials
  const trustDomain = tls.trustDomain ?? identity.trustDomainOf(credentials.ca)
  const serverIdOf = (c: TlsCredentials): string => {
    try {
      return identity.inspectWorkloadCertificate(new X509Certificate(c.cert).raw, trustDomain, 'server').workload.id
    } catch (cause) {
      throw new TypeError(`serveStreamableHttp: tls.credentials.cert is not an agent-trust certificate of trust domain "${trustDomain}"`, {
        cause,
      })
    }
  }
  const serverId = serverIdOf(credentials)
  // `ca` also pins the issuer to this bundle, whatever else the TLS stack was told to trust.
  const validation = { trustDomain, revocations, ca: credentials.ca, ...(now === undefined ? {} : { now }) }
  const refuse = (error: AgentTrustError, stage: 'connection' | 'request'): void => {
    audit?.record(peerRefused('tool_call', error.code, { destination: serverId, stage, reason: error.details.rule }))
  }
  const server = createHttpsServer(serverOptions, listener)
  identity.guardTlsServer(server, { ...validation, onRefused: (e) => refuse(e, 'connection') })
  server.on('tlsClientError', (err: Error & { code?: unknown }) => {
    // No certificate, another CA, expired: the handshake itself failed.
    audit?.record(
      peerRefused('tool_call', 'ERR_PEER_UNAUTHENTICATED', {
        destination: serverId,
        stage: 'handshake',
        reason: String(err.code ?? 'tls'),
      }),
    )
  })
  return {
    server,
    peer: identity.createPeerIdentity(validation),
    refuse,
    update(next: TlsCredentials) {
      const options = identity.mtlsServerOptions(next)
      if (serverIdOf(next) !== serverId) throw new TypeError('updateCredentials: the new certificate names another server')
      server.setSecureContext(options)
    },
  }
}
