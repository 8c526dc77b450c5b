/**
 * The MCP tests' shared data, free of any MCP SDK import: ids, the manifest, the tool log.
 */
import type { ManifestInput } from 'agent-trust'
import { CONTEXT, READ_DOCUMENTS } from './seed.js'

export { CONTEXT }

export const SERVER_ID = 'agent-database-reader'
export const META_KEY = 'io.agent-trust/capability'

export const MANIFEST: ManifestInput = {
  authority: { id: 'agent-trust-authority' },
  agents: [
    {
      id: 'agent-summarizer-v2',
      trustLevel: 'L2',
      grants: [
        'db:read:documents:namespace:user-123',
        'mcp:*:tools/list',
        'tool:agent-database-reader:echo',
        'tool:agent-other-server:echo',
      ],
    },
    // L1: its grants cover the purge scope, so it can hold a (read-minted) token for it; its level forbids execute.
    {
      id: 'agent-status-reader',
      trustLevel: 'L1',
      grants: ['db:read:documents:namespace:*', 'db:admin:purge:namespace:*', 'mcp:*:tools/list'],
    },
    {
      id: 'agent-operator',
      trustLevel: 'L2',
      grants: ['db:read:documents:namespace:*', 'db:admin:purge:namespace:*', 'mcp:*:tools/list', 'tool:agent-database-reader:*'],
    },
    {
      id: SERVER_ID,
      trustLevel: 'L2',
      tools: [READ_DOCUMENTS, { name: 'purge_namespace', operation: 'execute', scope: 'db:admin:purge:namespace:{namespace}' }],
    },
    { id: 'agent-other-server', trustLevel: 'L2' },
  ],
}

/** What the tools saw: how often each ran, and whether a capability ever reached them. */
export interface ToolLog {
  calls: Array<{ tool: string; args: unknown; tokenVisible: boolean }>
}

/** The text of the first content block of a tool result. */
export function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content
  return content?.[0]?.text ?? ''
}
