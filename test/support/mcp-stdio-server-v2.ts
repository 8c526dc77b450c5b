/**
 * The database-reader on MCP SDK 2.x (`@modelcontextprotocol/server`) as a stdio server in a
 * child process. Only the authority's public JWKS comes in, through AGENT_TRUST_MCP_FIXTURE
 * (JSON); replay state is this process's in-memory store. The same configuration as the 1.x
 * fixture (mcp-stdio-server.ts), except that `guard` defaults to 'agent-trust'.
 */
import type { McpServer } from '@modelcontextprotocol/server'
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio'
import type { JWK } from 'jose'
import { createVerifier, type JSONWebKeySet } from 'agent-trust'
import { guardMcpServer } from 'agent-trust/mcp'
import { bareCheck, joseCheck, type TokenCheck } from './bench-guards.js'
import type { FixtureConfig } from './mcp-stdio-server.js'
import { buildCheckedEchoServerV2, buildMcpServerV2 } from './mcp-world-v2.js'

const config = JSON.parse(process.env.AGENT_TRUST_MCP_FIXTURE ?? '{}') as Partial<FixtureConfig>
const guard = config.guard ?? 'agent-trust'
let server: McpServer
if (guard === 'jose' || guard === 'bare') {
  const check: TokenCheck =
    guard === 'jose'
      ? await joseCheck(config.josePublicJwk as JWK, String(config.issuer), String(config.serverId))
      : bareCheck(config.barePublicJwk as JWK)
  server = buildCheckedEchoServerV2(check)
} else {
  server = buildMcpServerV2()
  if (guard === 'agent-trust') {
    const verifier = createVerifier({
      id: String(config.serverId),
      issuers: [{ issuer: String(config.issuer), jwks: config.jwks as JSONWebKeySet }],
      manifest: config.manifest,
      mode: 'enforce',
      cryptoOffload: config.cryptoOffload === true,
    })
    guardMcpServer(server, { verifier, manifest: config.manifest })
  }
}
await server.connect(new StdioServerTransport())
process.stdin.once('end', () => process.exit(0))
