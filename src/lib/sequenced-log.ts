/**
 * A keyed map whose changes can be read back in order, a page at a time.
 *
 * Every write gives its key a new sequence number; `page(after, limit)` returns the live
 * entries whose latest write came after `after`, oldest first, by binary search in an
 * append-only index: O(log n + limit) per page, never a scan of the whole map. An entry
 * present for a whole paged read is returned exactly once by it (its sequence number only
 * grows, and pages only move forward); one rewritten meanwhile shows up again later.
 * Entries are forgotten once their `forgetAtMs` has passed (swept at most once a second).
 */
export interface SequencedEntry<V> {
  readonly key: string
  readonly value: V
  readonly forgetAtMs: number
  readonly seq: number
}

export class SequencedLog<V> {
  readonly #entries = new Map<string, SequencedEntry<V>>()
  /** (seq, key) in write order; an element whose key has a newer seq is stale and skipped. */
  #order: Array<{ readonly seq: number; readonly key: string }> = []
  #seq = 0
  #nextSweepMs = 0

  get size(): number {
    return this.#entries.size
  }

  /** The latest sequence number given out. */
  get seq(): number {
    return this.#seq
  }

  get(key: string, nowMs: number): SequencedEntry<V> | undefined {
    const e = this.#entries.get(key)
    return e !== undefined && e.forgetAtMs > nowMs ? e : undefined
  }

  set(key: string, value: V, forgetAtMs: number): void {
    const seq = ++this.#seq
    this.#entries.set(key, { key, value, forgetAtMs, seq })
    this.#order.push({ seq, key })
    if (this.#order.length > 2 * this.#entries.size + 1024) this.#compact()
  }

  /** Live entries written after `after`, at most `limit`; `cursor` is where the next page starts. */
  page(after: number, limit: number, nowMs: number): { entries: SequencedEntry<V>[]; cursor: number; more: boolean } {
    this.sweep(nowMs)
    const order = this.#order
    let lo = 0
    let hi = order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((order[mid] as { seq: number }).seq <= after) lo = mid + 1
      else hi = mid
    }
    const entries: SequencedEntry<V>[] = []
    let cursor = after
    let i = lo
    for (; i < order.length && entries.length < limit; i++) {
      const o = order[i] as { seq: number; key: string }
      cursor = o.seq
      const e = this.#entries.get(o.key)
      if (e !== undefined && e.seq === o.seq && e.forgetAtMs > nowMs) entries.push(e)
    }
    return { entries, cursor, more: i < order.length }
  }

  sweep(nowMs: number): void {
    if (nowMs < this.#nextSweepMs) return
    this.#nextSweepMs = nowMs + 1000
    let removed = false
    for (const [k, v] of this.#entries) {
      if (v.forgetAtMs <= nowMs) {
        this.#entries.delete(k)
        removed = true
      }
    }
    if (removed) this.#compact()
  }

  #compact(): void {
    this.#order = this.#order.filter((o) => this.#entries.get(o.key)?.seq === o.seq)
  }
}
