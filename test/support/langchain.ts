/** Shared set-up for the LangChain adapter tests: a real authority, verifier, tools and agents. */
import { AIMessage, type BaseMessage } from '@langchain/core/messages'
import { fakeModel } from '@langchain/core/testing'
import { tool } from '@langchain/core/tools'
import { z } from 'zod'
import {
  Authority,
  createVerifier,
  MemoryAuditLog,
  MemoryReplayRevocationStore,
  type EnforcementMode,
  type ManifestInput,
} from 'agent-trust'
import { agentTrustContext, type AgentTrustCaller } from 'agent-trust/langchain'
import { CONTEXT, READ_DOCUMENTS, WRITE_DOCUMENT } from './seed.js'

export const IDS = CONTEXT
export const TOOLKIT = 'agent-database-reader'

export const MANIFEST: ManifestInput = {
  authority: { id: 'test-authority' },
  agents: [
    {
      id: 'agent-orchestrator',
      trustLevel: 'L3',
      grants: ['db:read:documents:namespace:*', 'db:write:documents:namespace:*', 'tool:agent-database-reader:purge'],
      maxDelegationDepth: 2,
      egress: ['https://*.internal.example'],
    },
    {
      id: 'agent-summarizer-v2',
      trustLevel: 'L2',
      grants: ['db:read:documents:namespace:user-123', 'db:write:documents:namespace:user-123'],
      maxDelegationDepth: 1,
    },
    { id: 'agent-status-reader', trustLevel: 'L1', grants: ['db:read:documents:namespace:*', 'db:write:documents:namespace:*'] },
    {
      id: TOOLKIT,
      trustLevel: 'L2',
      tools: [READ_DOCUMENTS, WRITE_DOCUMENT],
    },
  ],
}

export function caller(agentId: string): AgentTrustCaller {
  return { agentId, ...IDS }
}

export function ctx(agentId: string): Record<string, unknown> {
  return agentTrustContext(caller(agentId))
}

export async function makeKernel(options: { mode?: EnforcementMode; manifest?: ManifestInput; maxChildrenPerParent?: number } = {}) {
  const audit = new MemoryAuditLog()
  const store = new MemoryReplayRevocationStore()
  const authority = await Authority.create({
    manifest: options.manifest ?? MANIFEST,
    store,
    audit,
    ...(options.maxChildrenPerParent === undefined ? {} : { maxChildrenPerParent: options.maxChildrenPerParent }),
  })
  const verifier = createVerifier({ id: TOOLKIT, issuers: [authority.trustedIssuer()], store, audit, mode: options.mode ?? 'enforce' })
  return { authority, verifier, audit, store }
}

/** What each tool saw: arguments and the keys of its config (to prove no token is there). */
export interface Calls {
  readonly runs: Array<{ tool: string; args: unknown; config: Record<string, unknown> }>
}

export function makeTools() {
  const calls: Calls = { runs: [] }
  const readDocuments = tool(
    async (args, config) => {
      calls.runs.push({ tool: 'read_documents', args, config: config as unknown as Record<string, unknown> })
      return `3 documents in ${args.namespace}`
    },
    {
      name: 'read_documents',
      description: 'Read the documents of a namespace',
      // A transform: the guard must see what the tool runs with, not what the model wrote.
      schema: z.object({ namespace: z.string().trim().toLowerCase() }),
    },
  )
  const writeDocument = tool(
    async (args) => {
      calls.runs.push({ tool: 'write_document', args, config: {} })
      return `written to ${args.namespace}`
    },
    { name: 'write_document', description: 'Write a document', schema: z.object({ namespace: z.string(), text: z.string() }) },
  )
  const purge = tool(
    async () => {
      calls.runs.push({ tool: 'purge', args: {}, config: {} })
      return 'purged'
    },
    {
      name: 'purge',
      description: 'Delete everything (undeclared: execute, tool:agent-database-reader:purge)',
      schema: z.object({}),
      returnDirect: true,
    },
  )
  return { calls, readDocuments, writeDocument, purge }
}

/** A scripted model: each entry is one model turn (tool calls, or a final text). */
export function scripted(turns: ReadonlyArray<ReadonlyArray<{ name: string; args: Record<string, unknown> }> | string>) {
  const m = fakeModel()
  for (const t of turns) {
    if (typeof t === 'string') m.respond(new AIMessage(t))
    else m.respondWithTools(t.map((c) => ({ ...c })))
  }
  return m
}

export function toolMessages(
  messages: readonly BaseMessage[],
): Array<{ name: string | undefined; content: string; status: string | undefined }> {
  return messages
    .filter((m) => m.getType() === 'tool')
    .map((m) => ({ name: (m as { name?: string }).name, content: String(m.content), status: (m as { status?: string }).status }))
}

/** Every string anywhere in a value (to look for tokens). */
export function strings(v: unknown, out: string[] = [], seen = new WeakSet<object>()): string[] {
  if (typeof v === 'string') out.push(v)
  else if (typeof v === 'object' && v !== null) {
    if (seen.has(v)) return out
    seen.add(v)
    for (const k of Object.keys(v)) {
      try {
        strings((v as Record<string, unknown>)[k], out, seen)
      } catch {
        // getters that throw: ignore
      }
    }
  }
  return out
}

export const JWS_SHAPE = /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/
