/**
 * Kept-alive upstream connections of the egress proxy, one pool per checked destination: the
 * key is the request's origin together with the pinned address and port, so a connection
 * opened for one destination is never used for another, even one that shares its address.
 * An idle connection that receives anything, ends, or stays idle past `IDLE_MS` is closed.
 */
import { connect, type Socket } from 'node:net'

const IDLE_MS = 4000
const MAX_IDLE_PER_KEY = 32

export interface UpstreamHandler {
  onData(chunk: Buffer): void
  onEnd(): void
  onClose(): void
}

export interface Upstream {
  readonly key: string
  readonly socket: Socket
  /** True when it served an exchange before. */
  readonly reused: boolean
  /** Who the bytes go to; an idle connection has none. */
  handler: UpstreamHandler | undefined
}

interface Conn extends Upstream {
  reused: boolean
  idleSince: number
}

export class UpstreamPool {
  readonly #idle = new Map<string, Conn[]>()
  readonly #all = new Set<Conn>()
  readonly #sweep: NodeJS.Timeout

  constructor() {
    this.#sweep = setInterval(() => this.#expire(performance.now()), 1000)
    this.#sweep.unref()
  }

  /** An idle connection for `key` (unless `fresh`), else a new one to `address:port`. */
  take(key: string, address: string, port: number, fresh = false): Upstream {
    const list = fresh ? undefined : this.#idle.get(key)
    const now = performance.now()
    while (list !== undefined && list.length > 0) {
      const c = list.pop() as Conn
      if (!c.socket.destroyed && now - c.idleSince < IDLE_MS) {
        c.reused = true
        return c
      }
      c.socket.destroy()
    }
    const socket = connect({ host: address, port, noDelay: true })
    const c: Conn = { key, socket, reused: false, handler: undefined, idleSince: 0 }
    this.#all.add(c)
    socket.on('data', (d: Buffer) => (c.handler === undefined ? socket.destroy() : c.handler.onData(d)))
    socket.on('end', () => (c.handler === undefined ? socket.destroy() : c.handler.onEnd()))
    socket.on('error', () => socket.destroy())
    socket.on('close', () => {
      this.#all.delete(c)
      this.#forget(c)
      c.handler?.onClose()
    })
    return c
  }

  /** Back to the pool after a complete exchange (the caller checked it may be kept alive). */
  release(u: Upstream): void {
    const c = u as Conn
    c.handler = undefined
    if (c.socket.destroyed) return
    const list = this.#idle.get(c.key) ?? []
    if (list.length >= MAX_IDLE_PER_KEY) return void c.socket.destroy()
    c.idleSince = performance.now()
    // Reading on: an idle connection that receives anything is closed (the data handler above).
    c.socket.resume()
    list.push(c)
    this.#idle.set(c.key, list)
  }

  destroy(): void {
    clearInterval(this.#sweep)
    for (const c of this.#all) c.socket.destroy()
  }

  #forget(c: Conn): void {
    const list = this.#idle.get(c.key)
    if (list === undefined) return
    const i = list.indexOf(c)
    if (i >= 0) list.splice(i, 1)
    if (list.length === 0) this.#idle.delete(c.key)
  }

  #expire(now: number): void {
    for (const list of this.#idle.values()) for (const c of list) if (now - c.idleSince >= IDLE_MS) c.socket.destroy()
  }
}
