/**
 * Sub-agents with agent-trust/langchain: an agent wrapped as a tool, a `task` tool and a
 * supervisor hand-off. Each call spawns the child through the authority (only L3 parents;
 * the child at most the parent's level, grants and egress) and runs it as itself.
 *
 * Prerequisites: none. Run: `npx tsx --conditions=agent-trust-source examples/langchain-subagents.ts`
 */
import { AIMessage, HumanMessage } from '@langchain/core/messages'
import { fakeModel } from '@langchain/core/testing'
import { createAgent } from 'langchain'
import { Authority } from 'agent-trust'
import { agentAsTool, agentTrustContext, agentTrustMiddleware, handoffTool, taskTool } from 'agent-trust/langchain'

const authority = await Authority.create({
  manifest: {
    agents: [
      { id: 'agent-orchestrator', trustLevel: 'L3', grants: ['db:read:documents:namespace:*'], maxDelegationDepth: 1 },
      { id: 'agent-summarizer-v2', trustLevel: 'L2', grants: ['db:read:documents:namespace:user-123'] },
    ],
  },
})
const ids = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' }
const worker = (answer: string) =>
  createAgent({ model: fakeModel().respond(new AIMessage(answer)).respond(new AIMessage(answer)), tools: [] })
const reader = { trustLevel: 'L2' as const, grants: ['db:read:documents:namespace:user-123'] }

const researcher = agentAsTool(
  { name: 'researcher', description: 'Finds documents', agent: worker('found 3 documents'), child: reader },
  { authority },
)
const task = taskTool([{ name: 'summarizer', description: 'Summarizes', agent: worker('a summary'), child: reader }], { authority })
const toWriter = handoffTool(
  { name: 'writer', description: 'Writes the reply', agent: worker('a reply'), child: { trustLevel: 'L1', grants: [] } },
  { authority },
)

for (const [caller, who] of [
  ['agent-orchestrator', 'L3 orchestrator'],
  ['agent-summarizer-v2', 'L2 summarizer'],
] as const) {
  const model = fakeModel()
    .respondWithTools([{ name: 'researcher', args: { input: 'find the Q3 report' } }])
    .respondWithTools([{ name: 'task', args: { subagent_type: 'summarizer', description: 'summarize it' } }])
    .respondWithTools([{ name: 'transfer_to_writer', args: {} }])
    .respond(new AIMessage('done'))
  const agent = createAgent({ model, tools: [researcher, task, toWriter], middleware: [agentTrustMiddleware({ onDenied: 'soft' })] })
  const out = await agent.invoke(
    { messages: [new HumanMessage('Report on Q3')] },
    { context: agentTrustContext({ agentId: caller, ...ids }) },
  )
  console.log(`${who}:`)
  for (const m of out.messages)
    if (m.getType() === 'tool') console.log(`  ${(m as { name?: string }).name}: ${String(m.content).slice(0, 90)}`)
}
