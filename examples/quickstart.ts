/**
 * The smallest useful program: one authority, one tool server, one call.
 * Prerequisites: `npm install`.
 */
import { Authority } from 'agent-trust'

const authority = await Authority.create({
  manifest: {
    agents: [
      { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
      {
        id: 'agent-database-reader',
        trustLevel: 'L2',
        tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
      },
    ],
  },
})
const verifier = authority.createVerifier({ id: 'agent-database-reader', mode: 'enforce' })

const { token, scope, operation } = await authority.mintForTool({
  subject: 'agent-summarizer-v2',
  audience: 'agent-database-reader',
  tool: 'read_documents',
  args: { namespace: 'user-123' },
  context: { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' },
})
const capability = await verifier.verify(token, { scope, operation, tool: 'read_documents' })
console.log(`allowed: ${capability.presenter} may ${operation} ${scope}`)

try {
  await verifier.verify(token, { scope, operation })
} catch (e) {
  console.log(`denied: ${(e as { code: string }).code}`)
}
