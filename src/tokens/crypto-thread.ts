/**
 * ECDSA on one dedicated worker thread (`cryptoOffload`).
 *
 * Why a dedicated thread and not libuv's threadpool (`crypto.sign(..., callback)`): measured
 * on a 2-core machine with an MCP client and server in one process, the threadpool path kept
 * 0.79x of unguarded throughput and this one 0.87-0.89x. One long-lived thread does nothing but
 * P-256 arithmetic, so OpenSSL's precomputed tables stay in its core's cache (a sign costs
 * about twice as much once a busy event loop has evicted them), jobs travel in batches while
 * it is busy (see `#send`), and there is never more than one crypto thread competing with the
 * event loop for a core.
 *
 * The thread is shared by every authority and verifier in the process, started on first use,
 * and does not keep the process alive while idle. If it cannot start or dies, or has more than
 * MAX_QUEUED jobs waiting, the work is done on the calling thread instead: the same check with
 * the same result, never a skipped one.
 */
import type { KeyObject } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { es256Sign, es256Verify } from './es256.js'

/** Message kinds, main thread to worker. */
const SIGN = 0
const VERIFY = 1
const ADD_KEY = 2
const DROP_KEY = 3

/**
 * The worker's whole program (evaluated as a CommonJS script, so it needs no file next to the
 * compiled module and works the same from source, from `dist/` and from a bundle). It answers
 * each batch with one message, `[id, result, id, result, ...]`; `null` means the operation
 * threw, and the caller then repeats it on its own thread to get the error itself.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { sign, verify } = require('node:crypto')
const keys = new Map()
parentPort.on('message', (batch) => {
  const out = []
  for (const m of batch) {
    switch (m[0]) {
      case ${ADD_KEY}: keys.set(m[1], m[2]); break
      case ${DROP_KEY}: keys.delete(m[1]); break
      case ${SIGN}:
        try { out.push(m[1], sign('sha256', Buffer.from(m[3], 'latin1'), { key: keys.get(m[2]), dsaEncoding: 'ieee-p1363' }).toString('base64url')) }
        catch { out.push(m[1], null) }
        break
      case ${VERIFY}:
        try { out.push(m[1], verify('sha256', Buffer.from(m[3], 'latin1'), { key: keys.get(m[2]), dsaEncoding: 'ieee-p1363' }, m[4])) }
        catch { out.push(m[1], null) }
        break
    }
  }
  if (out.length > 0) parentPort.postMessage(out)
})
`

interface Job {
  readonly op: typeof SIGN | typeof VERIFY
  readonly key: KeyObject
  readonly input: string
  readonly signature: Uint8Array | undefined
  readonly resolve: (result: string | boolean) => void
  readonly reject: (error: unknown) => void
}

/** Consecutive failed starts after which the thread is no longer tried (work stays inline). */
const MAX_START_FAILURES = 3

/**
 * Jobs waiting for the thread beyond which new ones run inline: a thread that cannot keep up
 * is no reason to queue without bound, and the event loop then shares the work (and slows
 * down, which is the back-pressure a server under overload needs).
 */
const MAX_QUEUED = 256

function runInline(job: Pick<Job, 'op' | 'key' | 'input' | 'signature'>): string | boolean {
  return job.op === SIGN ? es256Sign(job.key, job.input) : es256Verify(job.key, job.input, job.signature as Uint8Array)
}

function settleInline(job: Job): void {
  try {
    job.resolve(runInline(job))
  } catch (error) {
    job.reject(error)
  }
}

class CryptoThread {
  #worker: Worker | undefined
  /** Keys the current worker holds, by id; a new worker starts with none. */
  #keyIds = new WeakMap<KeyObject, number>()
  #nextKeyId = 1
  #nextJobId = 1
  readonly #pending = new Map<number, Job>()
  #outbox: unknown[] = []
  #flushQueued = false
  #startFailures = 0
  /** Tells the worker to forget a key once nothing here references it (rotated-out keys). */
  readonly #released = new FinalizationRegistry<{ worker: Worker; keyId: number }>(({ worker, keyId }) => {
    if (worker === this.#worker) this.#send([DROP_KEY, keyId])
  })

  run(op: Job['op'], key: KeyObject, input: string, signature?: Uint8Array): Promise<string | boolean> {
    return new Promise((resolve, reject) => {
      const job: Job = { op, key, input, signature, resolve, reject }
      const worker = this.#pending.size >= MAX_QUEUED ? undefined : this.#ensureWorker()
      if (worker === undefined) {
        settleInline(job)
        return
      }
      let keyId = this.#keyIds.get(key)
      if (keyId === undefined) {
        keyId = this.#nextKeyId++
        this.#keyIds.set(key, keyId)
        this.#released.register(key, { worker, keyId })
        this.#send([ADD_KEY, keyId, key])
      }
      const id = this.#nextJobId++
      if (this.#pending.size === 0) worker.ref()
      this.#pending.set(id, job)
      // A copy: a Buffer is often a view of a shared 8 KiB pool, and cloning a view clones all of it.
      this.#send(op === SIGN ? [SIGN, id, keyId, input] : [VERIFY, id, keyId, input, Uint8Array.from(signature as Uint8Array)])
    })
  }

  /** Stops the worker (tests: what happens to work in flight when the thread dies). */
  async terminate(): Promise<void> {
    await this.#worker?.terminate()
  }

  get running(): boolean {
    return this.#worker !== undefined
  }

  #ensureWorker(): Worker | undefined {
    if (this.#worker !== undefined) return this.#worker
    if (this.#startFailures >= MAX_START_FAILURES) return undefined
    let worker: Worker
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, name: 'agent-trust-crypto' })
    } catch {
      this.#startFailures++
      return undefined
    }
    worker.unref()
    worker.on('message', (results: unknown[]) => this.#settle(results))
    // 'error' is followed by 'exit'; both end this worker. Work in flight is redone inline.
    const end = (): void => this.#lost(worker)
    worker.on('error', end)
    worker.on('exit', end)
    worker.once('online', () => {
      this.#startFailures = 0
    })
    this.#worker = worker
    return worker
  }

  #send(message: unknown[]): void {
    this.#outbox.push(message)
    if (this.#flushQueued) return
    this.#flushQueued = true
    const flush = (): void => {
      this.#flushQueued = false
      const batch = this.#outbox
      this.#outbox = []
      this.#worker?.postMessage(batch)
    }
    // An idle thread gets the job at once (it sleeps, and latency is what counts). A busy one
    // gets whatever this turn of the event loop adds, in one message at its end: fewer
    // messages and wake-ups each way (measured: 0.86-0.98x of unguarded HTTP throughput against
    // 0.79-0.83x posting every job at once, with no added latency).
    if (this.#pending.size > 1) setImmediate(flush)
    else queueMicrotask(flush)
  }

  #settle(results: unknown[]): void {
    for (let i = 0; i < results.length; i += 2) {
      const id = results[i] as number
      const job = this.#pending.get(id)
      if (job === undefined) continue
      this.#pending.delete(id)
      const result = results[i + 1] as string | boolean | null
      if (result === null) settleInline(job)
      else job.resolve(result)
    }
    if (this.#pending.size === 0) this.#worker?.unref()
  }

  #lost(worker: Worker): void {
    if (worker !== this.#worker) return
    this.#worker = undefined
    this.#keyIds = new WeakMap()
    this.#outbox = []
    if (this.#startFailures < MAX_START_FAILURES) this.#startFailures++
    const jobs = [...this.#pending.values()]
    this.#pending.clear()
    for (const job of jobs) settleInline(job)
  }
}

const thread = new CryptoThread()

/** ES256 signature (IEEE P1363, base64url) of `input` on the crypto thread. */
export function signOnCryptoThread(key: KeyObject, input: string): Promise<string> {
  return thread.run(SIGN, key, input) as Promise<string>
}

/** Whether `signature` is a valid ES256 signature of `input`, checked on the crypto thread. Throws as `crypto.verify` would. */
export function verifyOnCryptoThread(key: KeyObject, input: string, signature: Uint8Array): Promise<boolean> {
  return thread.run(VERIFY, key, input, signature) as Promise<boolean>
}

/** Test hooks: stop the thread, and whether it is running. Not part of the package's API. */
export const cryptoThreadForTests = {
  terminate: (): Promise<void> => thread.terminate(),
  get running(): boolean {
    return thread.running
  },
}
