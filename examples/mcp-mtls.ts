/**
 * MCP over Streamable HTTP with mutual TLS: the server accepts only agents holding a
 * certificate from the agent-trust CA, each call's token is bound to the caller's
 * certificate, and a token stolen from the summarizer is refused when another agent
 * presents it (ERR_TOKEN_BINDING).
 *
 * Prerequisites: `npm install`. Run: `npx tsx --conditions=agent-trust-source examples/mcp-mtls.ts`
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { Authority, createVerifier, type ManifestInput } from 'agent-trust'
import { CertificateAuthority } from 'agent-trust/identity'
import { capabilityErrorCode, createMtlsClientTransport, guardMcpServer, serveStreamableHttp, withCapabilities } from 'agent-trust/mcp'

const manifest: ManifestInput = {
  agents: [
    { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
    { id: 'moltbot-orchestrator', trustLevel: 'L3', grants: ['db:read:documents:namespace:*'] },
    {
      id: 'agent-database-reader',
      trustLevel: 'L2',
      tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
    },
  ],
}
const context = { session_id: 's-1', user_id: 'user-123', task_id: 't-1' }
const authority = await Authority.create({ manifest }) // or createAuthorityClient(...) from agent-trust/authority-service
const ca = await CertificateAuthority.create({ trustDomain: authority.manifest.trustDomain })
// Each agent would generate its key and enroll with a CSR; issueLocal does both here.
const [reader, summarizer, orchestrator] = await Promise.all(
  ['agent-database-reader', 'agent-summarizer-v2', 'moltbot-orchestrator'].map((id) => ca.issueLocal({ kind: 'agent', id })),
)

// Server: HTTPS + mTLS; the guard sees each request's peer and checks presenter and binding.
const verifier = createVerifier({
  id: 'agent-database-reader',
  issuers: [authority.trustedIssuer()],
  store: authority.store,
  manifest,
  mode: 'enforce',
})
const http = await serveStreamableHttp(
  () => {
    const server = new McpServer({ name: 'agent-database-reader', version: '1.0.0' })
    server.registerTool('read_documents', { inputSchema: { namespace: z.string() } }, async ({ namespace }) => ({
      content: [{ type: 'text', text: `documents of ${namespace}` }],
    }))
    return guardMcpServer(server, { verifier, manifest })
  },
  { tls: { credentials: reader! } },
)

// Client: the transport presents the summarizer's certificate; its tokens are bound to it.
const t = await createMtlsClientTransport(http.url, { credentials: summarizer!, serverId: 'agent-database-reader' })
const client = withCapabilities(new Client({ name: 'summarizer', version: '1.0.0' }), {
  issuer: authority,
  agentId: t.agentId,
  serverId: 'agent-database-reader',
  context,
  certificateThumbprint: t.certificateThumbprint,
})
await client.connect(t.transport)
const result = await client.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' } })
console.log('summarizer, own bound token: allowed', JSON.stringify(result.content))

// A token minted for (and bound to) the summarizer, presented by the orchestrator over its own mTLS connection.
const stolen = await authority.mint({
  subject: 'agent-summarizer-v2',
  audience: 'agent-database-reader',
  scope: ['db:read:documents:namespace:user-123'],
  operation: 'read',
  context,
  certificateThumbprint: summarizer!.issued.thumbprint,
})
const o = await createMtlsClientTransport(http.url, { credentials: orchestrator!, serverId: 'agent-database-reader' })
const thief = new Client({ name: 'orchestrator', version: '1.0.0' })
await thief.connect(o.transport)
await thief.callTool({ name: 'read_documents', arguments: { namespace: 'user-123' }, _meta: { 'io.agent-trust/capability': stolen } }).then(
  () => console.log('orchestrator, stolen token: allowed (unexpected)'),
  (e: unknown) => console.log(`orchestrator, stolen token: denied ${capabilityErrorCode(e)}`),
)

await Promise.all([client.close(), thief.close()])
await Promise.all([t.close(), o.close(), http.close()])
