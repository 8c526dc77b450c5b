/**
 * A decided `CONNECT` tunnel (RFC 9110 section 9.3.6): once the upstream connection to the
 * checked address is up, the proxy answers 200 and only relays bytes, in both directions, with
 * the sockets' own flow control; it neither reads nor records what passes.
 *
 * Upstream to client (downloads, the bulk direction of most tunnels) reads into one buffer of
 * the tunnel's own and writes from it: no allocation per read, reads of up to `READ_BUFFER`
 * bytes, and the next read waits until the kernel has taken the previous write. Client to
 * upstream is a plain `pipe`.
 */
import { connect, type NetConnectOpts, type Socket } from 'node:net'

const BAD_GATEWAY = 'HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'
const READ_BUFFER = 256 * 1024
const WRITE_HIGH_WATER = 1024 * 1024

export function openTunnel(client: Socket, address: string, port: number, head: Buffer, tunnels: Set<Socket>): void {
  let open = false
  let waiting = false
  const flushed = (): void => {
    if (!waiting) return
    waiting = false
    up.resume()
  }
  // `highWaterMark` reaches the socket's stream options (Node's typings omit it from connect's).
  const options: NetConnectOpts & { highWaterMark: number } = {
    host: address,
    port,
    noDelay: true,
    highWaterMark: WRITE_HIGH_WATER,
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER),
      callback: (n: number, buf: Buffer): boolean => {
        if (client.destroyed) return false
        client.write(buf.subarray(0, n), flushed)
        // The buffer is read into again only once the kernel has taken these bytes.
        if (client.writableLength === 0) return true
        waiting = true
        return false
      },
    },
  }
  const up = connect(options)
  tunnels.add(client)
  client.on('close', () => {
    tunnels.delete(client)
    up.destroy()
  })
  up.on('error', () => (open ? client.destroy() : client.end(BAD_GATEWAY)))
  up.on('end', () => client.end())
  up.on('connect', () => {
    open = true
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) up.write(head)
    client.pipe(up)
    client.resume()
  })
}
