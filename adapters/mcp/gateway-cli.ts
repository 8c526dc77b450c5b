#!/usr/bin/env node
/**
 * The `agent-trust-mcp-gateway` command (package.json `bin`); the program is `gateway-main.ts`.
 * It is loaded with a dynamic import so that a missing MCP SDK (an optional peer dependency),
 * or any agent-trust error while starting, ends the process with one line on stderr and exit
 * code 1 instead of a stack trace.
 */
import { isAgentTrustError } from 'agent-trust'
import { loadWithPeers } from '#internal'

try {
  await loadWithPeers('agent-trust-mcp-gateway', ['@modelcontextprotocol/sdk'], () => import('./gateway-main.js'))
} catch (e) {
  if (!isAgentTrustError(e)) throw e
  process.stderr.write(`agent-trust-mcp-gateway: ${e.message} [${e.code}]\n`)
  process.exit(1)
}
