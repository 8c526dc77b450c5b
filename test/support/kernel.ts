/** A standard kernel set-up for tests: the seed's agents, an authority, a forger. */
import { createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto'
import {
  Authority,
  createVerifier,
  MemoryAuditLog,
  MemoryReplayRevocationStore,
  type ManifestInput,
  type VerifierOptions,
} from 'agent-trust'
import { CONTEXT, READ_DOCUMENTS, READ_SCOPE, WRITE_DOCUMENT } from './seed.js'

export { CONTEXT, READ_SCOPE }

/** A read mint for `subject` to the database reader (the seed's read scope and context). */
export const readMintFor = (subject: string) => ({
  subject,
  audience: 'agent-database-reader',
  scope: [READ_SCOPE],
  operation: 'read' as const,
  context: CONTEXT,
})
/** The requirement a verifier checks a {@link readMintFor} token against. */
export const READ_REQUIREMENT = { scope: READ_SCOPE, operation: 'read' as const }

export const MANIFEST: ManifestInput = {
  authority: { id: 'moltbot-authority' },
  agents: [
    {
      id: 'moltbot-orchestrator',
      trustLevel: 'L3',
      grants: ['db:read:documents:namespace:*', 'db:write:documents:namespace:*', 'tool:agent-database-reader:*'],
      maxDelegationDepth: 3,
      egress: ['https://*.internal.example'],
    },
    {
      id: 'agent-summarizer-v2',
      trustLevel: 'L2',
      grants: ['db:read:documents:namespace:user-123', 'tool:agent-database-reader:purge'],
      maxDelegationDepth: 1,
    },
    { id: 'agent-status-reader', trustLevel: 'L1', grants: ['db:read:documents:namespace:*', 'db:write:documents:namespace:*'] },
    { id: 'agent-untrusted', trustLevel: 'L0', grants: ['db:read:documents:namespace:*'] },
    {
      id: 'agent-database-reader',
      trustLevel: 'L2',
      tools: [READ_DOCUMENTS, WRITE_DOCUMENT],
    },
    { id: 'agent-other-server', trustLevel: 'L2' },
  ],
}

export async function makeKernel(options: { manifest?: ManifestInput; verifier?: Partial<VerifierOptions> } = {}) {
  const audit = new MemoryAuditLog()
  const store = new MemoryReplayRevocationStore()
  const authority = await Authority.create({ manifest: options.manifest ?? MANIFEST, store, audit })
  const verifier = createVerifier({
    id: 'agent-database-reader',
    issuers: [authority.trustedIssuer()],
    store,
    audit,
    mode: 'enforce',
    ...options.verifier,
  })
  const mintRead = (over: Partial<Parameters<Authority['mint']>[0]> = {}) =>
    authority.mint({
      subject: 'agent-summarizer-v2',
      audience: 'agent-database-reader',
      scope: [READ_SCOPE],
      operation: 'read',
      context: CONTEXT,
      ...over,
    })
  const read = { scope: READ_SCOPE, operation: 'read' as const }
  return { authority, verifier, store, audit, mintRead, read }
}

export function b64url(v: unknown): string {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
}

/** Sign arbitrary header and payload with ES256 (IEEE P1363), like a forger holding the key. */
export function signRaw(header: unknown, payload: unknown, key: KeyObject): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}

export function hmacRaw(header: unknown, payload: unknown, secret: string | Buffer): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

export function decodePayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>
}

export function decodeHeader(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()) as Record<string, unknown>
}

export { MemoryReplayRevocationStore }
