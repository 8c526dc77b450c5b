/**
 * Many store writes, a bounded number at a time. A store call per item sent all at once
 * (`Promise.all(items.map(...))`) puts every one on the connection's admission queue: past
 * its bound (the Redis store's default is 1,024 waiting calls) they are refused with
 * `ERR_STORE_BUSY`, and so is every verifier sharing that connection meanwhile.
 */

/**
 * Calls outstanding at once for per-item store writes (a lineage's revocations): far below the
 * Redis store's default admission (128 in flight, 1,024 queued).
 */
export const STORE_WRITE_CONCURRENCY = 32

/**
 * Run `fn` for every item, at most `limit` at once, in order of start. Rejects with the first
 * failure; after it no further item is started (the ones running finish on their own), so a
 * store that is down costs one timeout per running call, not one per item.
 */
export async function forEachBounded<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0
  let failed = false
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T
      try {
        await fn(item)
      } catch (e) {
        failed = true
        throw e
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}
