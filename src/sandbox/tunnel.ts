/**
 * A decided `CONNECT` tunnel (RFC 9110 section 9.3.6): once the upstream connection to the
 * checked address is up, the proxy answers 200 and only relays bytes, in both directions, with
 * the sockets' own flow control; it neither reads nor records what passes.
 */
import { connect, type Socket } from 'node:net'

const BAD_GATEWAY = 'HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'

export function openTunnel(client: Socket, address: string, port: number, head: Buffer, tunnels: Set<Socket>): void {
  const up = connect({ host: address, port, noDelay: true })
  tunnels.add(client)
  let open = false
  client.on('close', () => {
    tunnels.delete(client)
    up.destroy()
  })
  up.on('error', () => (open ? client.destroy() : client.end(BAD_GATEWAY)))
  up.on('connect', () => {
    open = true
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) up.write(head)
    up.pipe(client)
    client.pipe(up)
    client.resume()
  })
}
