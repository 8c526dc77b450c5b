/**
 * agent-trust/langchain in one screen: guard a toolkit, add the middleware (last), pass the
 * caller in the runtime context. A scripted fake model stands in for the LLM.
 *
 * Prerequisites: none. Run: `npx tsx --conditions=agent-trust-source examples/langchain-quickstart.ts`
 */
import { AIMessage, HumanMessage } from '@langchain/core/messages'
import { fakeModel } from '@langchain/core/testing'
import { tool } from '@langchain/core/tools'
import { createAgent } from 'langchain'
import { z } from 'zod'
import { Authority, createVerifier } from 'agent-trust'
import { agentTrustContext, agentTrustMiddleware, guardTools } from 'agent-trust/langchain'

const authority = await Authority.create({
  manifest: {
    agents: [
      { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
      // The toolkit is a tool server in the manifest: its tools declare operation and scope.
      {
        id: 'docs-toolkit',
        trustLevel: 'L2',
        tools: [{ name: 'read_documents', operation: 'read', scope: 'db:read:documents:namespace:{namespace}' }],
      },
    ],
  },
})
// The toolkit's verifier: its id is the toolkit's id (the tokens' audience).
const verifier = createVerifier({ id: 'docs-toolkit', issuers: [authority.trustedIssuer()], store: authority.store, mode: 'enforce' })

const readDocuments = tool(async ({ namespace }) => `3 documents in ${namespace}`, {
  name: 'read_documents',
  description: 'Read the documents of a namespace',
  schema: z.object({ namespace: z.string() }),
})

const model = fakeModel()
  .respondWithTools([{ name: 'read_documents', args: { namespace: 'user-123' } }])
  .respondWithTools([{ name: 'read_documents', args: { namespace: 'user-999' } }]) // out of scope
  .respond(new AIMessage('done'))

const agent = createAgent({
  model,
  tools: guardTools([readDocuments], { authority, verifier }),
  middleware: [agentTrustMiddleware({ authority, verifier, onDenied: 'soft' })], // list it last
})

const result = await agent.invoke(
  { messages: [new HumanMessage('Summarize my documents')] },
  { context: agentTrustContext({ agentId: 'agent-summarizer-v2', session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }) },
)
for (const m of result.messages) if (m.getType() === 'tool') console.log(`${(m as { status?: string }).status}: ${String(m.content)}`)
// success: 3 documents in user-123
// error: agent-trust denied this tool call: ERR_SCOPE_DENIED. agent "agent-summarizer-v2" has no grant covering the requested scope
