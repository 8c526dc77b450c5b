/**
 * The database-reader on MCP SDK 2.x (`@modelcontextprotocol/server`) as a stdio server in a
 * child process, guarded by agent-trust. Only the authority's public JWKS comes in, through
 * AGENT_TRUST_MCP_FIXTURE (JSON); replay state is this process's in-memory store.
 */
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio'
import { createVerifier, type JSONWebKeySet, type ManifestInput } from 'agent-trust'
import { guardMcpServer } from 'agent-trust/mcp'
import { buildMcpServerV2 } from './mcp-world-v2.js'

interface FixtureConfig {
  readonly serverId: string
  readonly issuer: string
  readonly jwks: JSONWebKeySet
  readonly manifest: ManifestInput
}

const config = JSON.parse(process.env.AGENT_TRUST_MCP_FIXTURE ?? '{}') as FixtureConfig
const verifier = createVerifier({
  id: config.serverId,
  issuers: [{ issuer: config.issuer, jwks: config.jwks }],
  manifest: config.manifest,
  mode: 'enforce',
})
const server = guardMcpServer(buildMcpServerV2(), { verifier, manifest: config.manifest })
await server.connect(new StdioServerTransport())
process.stdin.once('end', () => process.exit(0))
