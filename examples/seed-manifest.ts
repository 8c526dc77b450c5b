/**
 * The seed's agents (shared by the demo scenarios):
 * - moltbot-orchestrator (L3) may spawn sub-agents and read any user's documents;
 * - agent-database-reader serves `read_documents({namespace})`, which requires
 *   `db:read:documents:namespace:<namespace>`;
 * - agent-summarizer-v2 (L2) is spawned at run time with one namespace only.
 */
import type { AgentDeclarationInput, ManifestInput } from 'agent-trust'

export const CONTEXT = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }

export const SEED_MANIFEST: ManifestInput = {
  authority: { id: 'moltbot-authority' },
  agents: [
    {
      id: 'moltbot-orchestrator',
      trustLevel: 'L3',
      grants: ['db:read:documents:namespace:*'],
      maxDelegationDepth: 2,
      egress: ['http://docs.internal.test'],
    },
    {
      id: 'agent-database-reader',
      trustLevel: 'L2',
      tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
    },
  ],
}

/** What the orchestrator asks the authority for when it spawns the summarizer. */
export const SUMMARIZER: Omit<AgentDeclarationInput, 'parent'> = {
  id: 'agent-summarizer-v2',
  trustLevel: 'L2',
  grants: ['db:read:documents:namespace:user-123'],
  maxDelegationDepth: 0,
  egress: ['http://docs.internal.test'],
}
