/**
 * The seed's scenario on the kernel alone, in one process, on in-memory defaults.
 * Prerequisites: none (`npm install`).
 */
import { Authority, MemoryAuditLog, type Verifier } from 'agent-trust'
import { attempt, describeTally, tallied, type Print } from './print.js'
import { CONTEXT, SEED_MANIFEST, SUMMARIZER } from './seed-manifest.js'

export async function runKernelScenario(print: Print): Promise<{ audit: MemoryAuditLog }> {
  const audit = new MemoryAuditLog()
  const authority = await Authority.create({ manifest: SEED_MANIFEST, audit })
  // The database-reader's verifier trusts only the authority's public keys and shares its
  // (in-memory) replay/revocation store; across processes that store is Redis.
  const reader: Verifier = authority.createVerifier({ id: 'agent-database-reader', audit, mode: 'enforce' })
  const readDocuments = async (token: string, namespace: string) =>
    reader.verify(token, {
      scope: `db:read:documents:namespace:${namespace}`,
      operation: 'read',
      tool: 'read_documents',
      args: { namespace },
    })
  const mintRead = (subject: string, namespace: string) =>
    authority.mintForTool({ subject, audience: 'agent-database-reader', tool: 'read_documents', args: { namespace }, context: CONTEXT })

  print('The orchestrator (L3) spawns the summarizer (L2, one namespace):')
  await attempt(print, 'orchestrator spawns agent-summarizer-v2 (L2, db:read:documents:namespace:user-123)', () =>
    authority.spawn({ parent: 'moltbot-orchestrator', child: SUMMARIZER }),
  )
  let stolen = ''
  await attempt(print, 'summarizer reads user-123 documents from agent-database-reader', async () => {
    const { token } = await mintRead('agent-summarizer-v2', 'user-123')
    stolen = token
    await readDocuments(token, 'user-123')
  })

  print('The summarizer is prompt-injected and turns hostile:')
  await attempt(print, 'summarizer asks for a token for user-999', () => mintRead('agent-summarizer-v2', 'user-999'))
  await attempt(print, 'summarizer presents its user-123 token for user-999', async () => {
    const { token } = await mintRead('agent-summarizer-v2', 'user-123')
    await readDocuments(token, 'user-999')
  })
  await attempt(print, 'summarizer smuggles "user-123:admin" into the namespace argument', () =>
    mintRead('agent-summarizer-v2', 'user-123:admin'),
  )
  await attempt(print, 'summarizer spawns a sub-agent', () =>
    authority.spawn({ parent: 'agent-summarizer-v2', child: { id: 'agent-exfil', trustLevel: 'L1', grants: [] } }),
  )
  await attempt(print, 'summarizer replays its used token', () => readDocuments(stolen, 'user-123'))
  await attempt(print, 'summarizer rewrites the scope in its token to user-999', async () => {
    const { token } = await mintRead('agent-summarizer-v2', 'user-123')
    const [h, p, s] = token.split('.')
    const claims = JSON.parse(Buffer.from(p as string, 'base64url').toString()) as Record<string, unknown>
    claims.scope = ['db:read:documents:namespace:user-999']
    await readDocuments(`${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`, 'user-999')
  })
  const pending = (await mintRead('agent-summarizer-v2', 'user-123')).token

  print('The orchestrator notices and revokes the summarizer:')
  await attempt(print, 'operator revokes agent-summarizer-v2', () => authority.revokeAgent('agent-summarizer-v2', { by: 'operator' }))
  await attempt(print, 'summarizer uses a token minted before the revocation', () => readDocuments(pending, 'user-123'))
  await attempt(print, 'summarizer asks for a fresh token', () => mintRead('agent-summarizer-v2', 'user-123'))

  print('A careless orchestrator tries to over-grant a child:')
  await attempt(print, 'orchestrator gives a child db:write:documents:namespace:user-123 (not its own)', () =>
    authority.spawn({
      parent: 'moltbot-orchestrator',
      child: { id: 'agent-writer', trustLevel: 'L2', grants: ['db:write:documents:namespace:user-123'] },
    }),
  )
  await attempt(print, 'orchestrator spawns a child at a level above L3', () =>
    authority.spawn({ parent: 'moltbot-orchestrator', child: { id: 'agent-root', trustLevel: 'L4' as 'L3', grants: [] } }),
  )
  return { audit }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { print, tally } = tallied((line) => console.log(line))
  const { audit } = await runKernelScenario(print)
  console.log(`\n${describeTally(tally)} above; the audit log holds ${audit.events.length} events (mints and spawns too).`)
}
