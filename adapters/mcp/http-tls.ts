/** Mutual TLS for the Streamable HTTP host: the HTTPS server, its peer checks, and credential rotation. */
import { X509Certificate } from 'node:crypto'
import { type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { optionProblem, peerRefused } from '#internal'
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
  // serveStreamableHttp has parsed `tls` with its schema; what is left needs the certificate read.
  if (typeof tls !== 'object' || tls === null) throw optionProblem('serveStreamableHttp', ['options', 'tls'], 'expected an object')
  const identity = await import('agent-trust/identity')
  const { credentials, revocations, audit, now } = tls
  const serverOptions = identity.mtlsServerOptions(credentials) // ERR_CONFIG_INVALID for anything but PEM credentials
  const trustDomain = tls.trustDomain ?? identity.trustDomainOf(credentials.ca)
  const serverIdOf = (c: TlsCredentials, factory: string, path: readonly string[]): string => {
    try {
      return identity.inspectWorkloadCertificate(new X509Certificate(c.cert).raw, trustDomain, 'server').workload.id
    } catch (cause) {
      throw optionProblem(factory, path, `expected an agent-trust server certificate of trust domain "${trustDomain}"`, cause)
    }
  }
  const serverId = serverIdOf(credentials, 'serveStreamableHttp', ['options', 'tls', 'credentials', 'cert'])
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
      // A renewal keeps the server's identity: clients pin it (mtlsClientOptions `server`).
      if (serverIdOf(next, 'updateCredentials', ['credentials', 'cert']) !== serverId)
        throw optionProblem('updateCredentials', ['credentials', 'cert'], `expected a certificate of server "${serverId}"`)
      server.setSecureContext(options)
    },
  }
}
