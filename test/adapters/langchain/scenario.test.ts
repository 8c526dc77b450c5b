/** The `npm start` LangChain scenario keeps telling the seed's story. */
import { describe, expect, it } from 'vitest'
import { runLangchainScenario } from '../../../examples/langchain-scenario.js'

describe('examples/langchain-scenario', () => {
  it('spawns the summarizer, allows the read, denies the injected exfiltration, ends cleanly', async () => {
    const lines: string[] = []
    const { audit } = await runLangchainScenario((l) => lines.push(l))
    expect(lines.join('\n')).toMatch(/ALLOWED +moltbot-orchestrator spawns agent-summarizer-v2 \(L2\)/)
    expect(lines.join('\n')).toMatch(/ALLOWED +summarizer calls read_documents/)
    expect(lines.join('\n')).toMatch(
      /DENIED +summarizer calls http_request POST https:\/\/external-api\.com\/collect .*\[ERR_EGRESS_DENIED\]/,
    )
    expect(lines.join('\n')).toMatch(/run stopped cleanly with ERR_EGRESS_DENIED/)
    expect(audit.events.filter((e) => e.decision === 'deny')).toMatchObject([
      { action: 'egress', code: 'ERR_EGRESS_DENIED', origin: 'agent-summarizer-v2' },
    ])
    expect(audit.events.find((e) => e.action === 'tool_call')).toMatchObject({
      decision: 'allow',
      origin: 'agent-summarizer-v2',
      tool: 'read_documents',
    })
  })
})
