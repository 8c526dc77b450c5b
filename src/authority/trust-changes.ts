/**
 * Where trust-change requests wait for a human. The authority writes a
 * request; an operator decides it from another process (the `agent-trust trust` command)
 * or through the authority's approver callback; the authority applies approved changes
 * when it syncs. The store is an authorization boundary: whoever can write it can approve.
 * Keep its file (mode 0600 by default) or Redis ACL to the authority and the operators.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { readTrustFile } from '../config/trust-file.js'
import { dirname, join, basename } from 'node:path'
import { z } from 'zod'
import { ConfigInvalid, StoreUnavailable, TrustChangeDenied } from '../errors.js'
import { parseOptions } from '../lib/options.js'
import { levelRank, type TrustLevel } from '../policy/trust.js'
import type { TrustChangeDecisionInput, TrustChangePrecondition, TrustChangeRequest, TrustChangeStatus, TrustChangeStore } from './types.js'

// ---- pure rules ------------------------------------------------------------------------

/**
 * The store's decision order. A request decided by an older store without a sequence number
 * sorts before every sequenced one, by its recorded time.
 */
function byDecision(a: Readonly<TrustChangeRequest>, b: Readonly<TrustChangeRequest>): number {
  return (
    (a.decisionSeq ?? -1) - (b.decisionSeq ?? -1) ||
    (a.decidedAt ?? '').localeCompare(b.decidedAt ?? '') ||
    a.createdAt.localeCompare(b.createdAt)
  )
}

/** The next decision sequence number of a store holding `all`. */
function nextDecisionSeq(all: Iterable<Readonly<TrustChangeRequest>>): number {
  let max = 0
  for (const r of all) if (r.decisionSeq !== undefined && r.decisionSeq > max) max = r.decisionSeq
  return max + 1
}

/** Approved requests in the order they were decided: the order to apply them in. */
/**
 * Approved changes in the order they were decided. An approval by the requester itself (a
 * store written by another tool, or edited) is not an approval: a human other than the one
 * who asked must decide.
 */
export function approvedInOrder(all: readonly Readonly<TrustChangeRequest>[]): TrustChangeRequest[] {
  return all.filter((r) => r.status === 'approved' && r.decidedBy !== r.requestedBy).sort(byDecision) as TrustChangeRequest[]
}

/** Pending requests one requester may have open at once, over all agents. */
export const MAX_PENDING_PER_REQUESTER = 16
/** Requests a store holds (pending and decided); past it, new requests are refused until old ones are pruned. */
export const MAX_STORED_REQUESTS = 50_000

/**
 * Whether a new request may be stored beside `all`, checked by every store inside its atomic
 * step, before anything is written: one pending request per requester and agent, a bound on
 * each requester's pending requests, and on the store's size, so that no agent can flood the
 * store or the operators' queue.
 */
export function admitRequest(req: Readonly<TrustChangeRequest>, all: readonly Readonly<TrustChangeRequest>[]): void {
  let pendingByRequester = 0
  for (const r of all) {
    if (r.id === req.id) throw new TrustChangeDenied('duplicate request id', { details: { rule: 'duplicate-id' } })
    if (r.status !== 'pending' || r.requestedBy !== req.requestedBy) continue
    if (r.agentId === req.agentId)
      throw new TrustChangeDenied(
        `a request for "${req.agentId}" by this requester is already pending (${r.id}): decide or withdraw it first`,
        {
          details: { agentId: req.agentId, rule: 'duplicate-pending' },
        },
      )
    pendingByRequester++
  }
  if (pendingByRequester >= MAX_PENDING_PER_REQUESTER)
    throw new TrustChangeDenied(`this requester already has ${MAX_PENDING_PER_REQUESTER} pending requests`, {
      details: { rule: 'too-many-pending' },
    })
  if (all.length >= MAX_STORED_REQUESTS)
    throw new TrustChangeDenied(`the trust-change store holds ${MAX_STORED_REQUESTS} requests: prune decided ones`, {
      details: { rule: 'store-full' },
    })
}

/** An agent's level after every approved change: the last approved `to`, else `base`. */
export function effectiveLevel(agentId: string, base: TrustLevel, all: readonly Readonly<TrustChangeRequest>[]): TrustLevel {
  let level = base
  for (const r of approvedInOrder(all)) if (r.agentId === agentId) level = r.to
  return level
}

/**
 * Refuse to approve a request made against a level the agent no longer has (another
 * change was approved since): the approver saw `from -> to`, and must see the real `from`.
 * `base` is the agent's level without any approved change (its manifest level).
 */
export function notStale(base: (agentId: string) => TrustLevel | undefined): TrustChangePrecondition {
  return (req, all) => {
    const current = effectiveLevel(req.agentId, base(req.agentId) ?? req.from, all)
    if (current !== req.from) {
      throw new TrustChangeDenied(`the request was made for ${req.from}->${req.to} but the agent is now ${current}; file a new request`, {
        details: { agentId: req.agentId, rule: 'stale' },
      })
    }
  }
}

/** Raising means more power: the approver should know which kind of change they approve. */
export function isRaise(r: Pick<TrustChangeRequest, 'from' | 'to'>): boolean {
  return levelRank(r.to) > levelRank(r.from)
}

function applyDecision(req: TrustChangeRequest, d: TrustChangeDecisionInput, decisionSeq: number): TrustChangeRequest {
  if (req.status !== 'pending') throw new TrustChangeDenied(`the request was already ${req.status}`, { details: { rule: 'not-pending' } })
  if (typeof d.decidedBy !== 'string' || d.decidedBy.trim().length === 0) throw new TrustChangeDenied('a decision must name its approver')
  if (d.approved && d.decidedBy.slice(0, 128) === req.requestedBy)
    throw new TrustChangeDenied('the requester cannot approve its own request: another operator must decide', {
      details: { rule: 'self-approval' },
    })
  return {
    ...req,
    status: d.approved ? 'approved' : 'denied',
    decidedBy: d.decidedBy.slice(0, 128),
    decidedAt: d.decidedAt,
    decisionSeq,
    ...(d.note === undefined ? {} : { note: d.note.slice(0, 500) }),
  }
}

// ---- memory --------------------------------------------------------------------------

/** One process (the default): requests live as long as the authority. */
export class MemoryTrustChangeStore implements TrustChangeStore {
  readonly #requests = new Map<string, TrustChangeRequest>()

  async add(request: TrustChangeRequest): Promise<void> {
    admitRequest(request, [...this.#requests.values()])
    this.#requests.set(request.id, { ...request })
  }

  async get(id: string): Promise<TrustChangeRequest | undefined> {
    const r = this.#requests.get(id)
    return r === undefined ? undefined : { ...r }
  }

  async list(status?: TrustChangeStatus): Promise<TrustChangeRequest[]> {
    return [...this.#requests.values()].filter((r) => status === undefined || r.status === status).map((r) => ({ ...r }))
  }

  async decide(id: string, decision: TrustChangeDecisionInput, precondition?: TrustChangePrecondition): Promise<TrustChangeRequest> {
    const req = this.#requests.get(id)
    if (req === undefined) throw new TrustChangeDenied('no such trust-change request', { details: { rule: 'unknown-request' } })
    const next = applyDecision(req, decision, nextDecisionSeq(this.#requests.values()))
    if (next.status === 'approved') precondition?.(req, [...this.#requests.values()])
    this.#requests.set(id, next)
    return { ...next }
  }

  async markApplied(id: string, appliedAt: string): Promise<void> {
    const r = this.#requests.get(id)
    if (r !== undefined && r.appliedAt === undefined) this.#requests.set(id, { ...r, appliedAt })
  }

  async close(): Promise<void> {}
}

// ---- file ----------------------------------------------------------------------------

const RequestSchema = z.object({
  id: z.string().min(1).max(64),
  agentId: z.string().min(1).max(255),
  from: z.enum(['L0', 'L1', 'L2', 'L3']),
  to: z.enum(['L0', 'L1', 'L2', 'L3']),
  reason: z.string().max(500),
  requestedBy: z.string().max(128),
  createdAt: z.string().max(40),
  status: z.enum(['pending', 'approved', 'denied']),
  decidedBy: z.string().max(128).optional(),
  decidedAt: z.string().max(40).optional(),
  decisionSeq: z.int().min(1).optional(),
  appliedAt: z.string().max(40).optional(),
  note: z.string().max(500).optional(),
})
const FileSchema = z.strictObject({ version: z.literal(1), requests: z.array(RequestSchema).max(100_000) })

export interface FileTrustChangeStoreOptions {
  /** Mode of the file. Default 0o600. */
  readonly mode?: number
  /** How long to wait for another process's lock, milliseconds. Default 5000. */
  readonly lockTimeoutMs?: number
  /** A lock older than this (a crashed writer) is broken, milliseconds. Default 30000. */
  readonly staleLockMs?: number
}

/**
 * A JSON file shared by the authority and the CLI on one host. Reads see a whole file
 * (writes go to a temporary file, fsynced, then renamed over it); changes take a lock
 * file (`<path>.lock`, created exclusively) so that two deciders never both win.
 */
/** The arguments of {@link FileTrustChangeStore}, checked once. */
const FileTrustChangeStoreArgsSchema = z.strictObject({
  path: z.string().min(1),
  options: z
    .strictObject({
      // A file mode (permission bits only): 0o600 keeps pending requests private to the owner.
      mode: z.int().min(0).max(0o777).optional(),
      lockTimeoutMs: z.int().min(1).max(600_000).optional(),
      staleLockMs: z.int().min(1).max(86_400_000).optional(),
    })
    .optional(),
})

export class FileTrustChangeStore implements TrustChangeStore {
  readonly path: string
  readonly #mode: number
  readonly #lockTimeoutMs: number
  readonly #staleLockMs: number

  constructor(path: string, options: FileTrustChangeStoreOptions = {}) {
    parseOptions('FileTrustChangeStore', FileTrustChangeStoreArgsSchema, { path, options })
    const { mode = 0o600, lockTimeoutMs = 5000, staleLockMs = 30_000 } = options
    this.path = path
    this.#mode = mode
    this.#lockTimeoutMs = lockTimeoutMs
    this.#staleLockMs = staleLockMs
  }

  async #read(): Promise<TrustChangeRequest[]> {
    let text: string
    try {
      text = await readTrustFile(this.path, 'trust-change store')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
      if (e instanceof ConfigInvalid) throw e
      throw new StoreUnavailable(`cannot read the trust-change store "${this.path}"`, { cause: e })
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new ConfigInvalid(`the trust-change store "${this.path}" is not valid JSON`)
    }
    const r = FileSchema.safeParse(json, { reportInput: false })
    if (!r.success)
      throw new ConfigInvalid(`the trust-change store "${this.path}" is not a valid store file`, {
        details: { issues: r.error.issues.length },
      })
    return r.data.requests as TrustChangeRequest[]
  }

  async #write(requests: readonly TrustChangeRequest[]): Promise<void> {
    // Never write a file this store could not read back (and so could not start from).
    if (!FileSchema.safeParse({ version: 1, requests }, { reportInput: false }).success)
      throw new TrustChangeDenied('the change would leave the trust-change store unreadable; nothing was written', {
        details: { rule: 'unreadable' },
      })
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.${randomUUID()}.tmp`)
    const h = await open(tmp, 'wx', this.#mode)
    try {
      await h.writeFile(`${JSON.stringify({ version: 1, requests }, null, 2)}\n`, 'utf8')
      await h.sync()
    } finally {
      await h.close()
    }
    try {
      await rename(tmp, this.path)
    } catch (e) {
      await rm(tmp, { force: true })
      throw e
    }
  }

  /**
   * A lock is broken only when its holder is gone: the PID it names is not a live process
   * on this host (a killed writer), or, when it names none or cannot be read, it is older
   * than `staleLockMs`. A slow live writer keeps its lock.
   */
  async #lockAbandoned(lock: string): Promise<boolean> {
    const st = await stat(lock).catch(() => undefined)
    if (st === undefined) return false
    const pid = Number((await readFile(lock, 'utf8').catch(() => '')).trim())
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid) {
      try {
        process.kill(pid, 0)
        return false // alive (or alive under another user: EPERM below)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EPERM') return false
        return true // ESRCH: no such process
      }
    }
    return Date.now() - st.mtimeMs > this.#staleLockMs
  }

  async #locked<T>(fn: (all: TrustChangeRequest[]) => Promise<{ result: T; write?: TrustChangeRequest[] }>): Promise<T> {
    const lock = `${this.path}.lock`
    await mkdir(dirname(this.path), { recursive: true })
    const deadline = Date.now() + this.#lockTimeoutMs
    for (;;) {
      try {
        const h = await open(lock, 'wx', 0o600)
        await h.writeFile(String(process.pid))
        await h.close()
        break
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
          throw new StoreUnavailable(`cannot lock the trust-change store "${this.path}"`, { cause: e })
        if (await this.#lockAbandoned(lock)) {
          await rm(lock, { force: true })
          continue
        }
        if (Date.now() > deadline)
          throw new StoreUnavailable(`the trust-change store "${this.path}" stayed locked for ${this.#lockTimeoutMs} ms`)
        await new Promise((r) => setTimeout(r, 10 + Math.floor(Math.random() * 20)))
      }
    }
    try {
      const { result, write } = await fn(await this.#read())
      if (write !== undefined) await this.#write(write)
      return result
    } finally {
      await rm(lock, { force: true })
    }
  }

  async add(request: TrustChangeRequest): Promise<void> {
    await this.#locked(async (all) => {
      admitRequest(request, all)
      return { result: undefined, write: [...all, { ...request }] }
    })
  }

  async get(id: string): Promise<TrustChangeRequest | undefined> {
    return (await this.#read()).find((r) => r.id === id)
  }

  async list(status?: TrustChangeStatus): Promise<TrustChangeRequest[]> {
    return (await this.#read()).filter((r) => status === undefined || r.status === status)
  }

  async decide(id: string, decision: TrustChangeDecisionInput, precondition?: TrustChangePrecondition): Promise<TrustChangeRequest> {
    return this.#locked(async (all) => {
      const i = all.findIndex((r) => r.id === id)
      const req = all[i]
      if (req === undefined) throw new TrustChangeDenied('no such trust-change request', { details: { rule: 'unknown-request' } })
      const next = applyDecision(req, decision, nextDecisionSeq(all))
      if (next.status === 'approved') precondition?.(req, all)
      const write = [...all]
      write[i] = next
      return { result: next, write }
    })
  }

  async markApplied(id: string, appliedAt: string): Promise<void> {
    await this.#locked(async (all) => {
      const i = all.findIndex((r) => r.id === id)
      const req = all[i]
      if (req === undefined || req.appliedAt !== undefined) return { result: undefined }
      const write = [...all]
      write[i] = { ...req, appliedAt }
      return { result: undefined, write }
    })
  }

  async close(): Promise<void> {}
}
