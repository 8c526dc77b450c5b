/**
 * The seed scenario's fixed pieces, declared once: the audit context every test call carries,
 * the summarizer's read scope, and the database-reader's tools. Each kit (kernel, MCP,
 * LangChain, identity) composes its manifest from these and adds only the agents its tests need.
 */
import type { ToolDeclaration } from 'agent-trust'

export const CONTEXT = { session_id: 'sess-xyz', user_id: 'user-123', task_id: 'task-456' } as const

export const READ_SCOPE = 'db:read:documents:namespace:user-123'

export const READ_DOCUMENTS: ToolDeclaration = {
  name: 'read_documents',
  operation: 'read',
  scope: 'db:read:documents:namespace:{namespace}',
}
export const WRITE_DOCUMENT: ToolDeclaration = {
  name: 'write_document',
  operation: 'write',
  scope: 'db:write:documents:namespace:{namespace}',
}
