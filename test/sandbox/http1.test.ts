/** The egress proxy's HTTP/1.1 framing (RFC 9112): where a message ends, and what is refused as ambiguous. */
import { describe, expect, it } from 'vitest'
import { BodyTracker, forwardHead, parseRequestHead, parseResponseHead, requestFraming, responseFraming } from '../../src/sandbox/http1.js'

const req = (t: string) => {
  const r = parseRequestHead(Buffer.from(t, 'latin1'))
  if (r === undefined || !r.ok) throw new Error(r === undefined ? 'incomplete' : r.error)
  return r.head
}
const res = (t: string) => {
  const r = parseResponseHead(Buffer.from(t, 'latin1'))
  if (r === undefined || !r.ok) throw new Error(r === undefined ? 'incomplete' : r.error)
  return r.head
}

describe('BodyTracker', () => {
  const body = '4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\ntrailer: x\r\n\r\n'
  it('finds the end of a chunked body fed whole or one byte at a time, and nothing after it', () => {
    const whole = new BodyTracker({ kind: 'chunked' })
    expect(whole.feed(Buffer.from(`${body}GET / HTTP/1.1`))).toBe(body.length)
    expect(whole.done).toBe(true)
    const bytes = new BodyTracker({ kind: 'chunked' })
    let n = 0
    for (const b of Buffer.from(body)) n += bytes.feed(Buffer.from([b]))
    expect([n, bytes.done]).toEqual([body.length, true])
  })

  it('refuses malformed chunked framing', () => {
    for (const bad of ['g\r\n', '4\nwiki', '4\r\nwikiX\r\n', '4 \r\nwiki\r\n', '0\r\nx\n', '\r\n', '12345678901234\r\n']) {
      const t = new BodyTracker({ kind: 'chunked' })
      t.feed(Buffer.from(bad))
      expect(t.error, bad).toBeDefined()
      expect(t.done).toBe(false)
    }
  })

  it('counts a Content-Length body', () => {
    const t = new BodyTracker({ kind: 'length', length: 5 })
    expect(t.feed(Buffer.from('abc'))).toBe(3)
    expect(t.feed(Buffer.from('deGET'))).toBe(2)
    expect(t.done).toBe(true)
  })
})

describe('heads and framing', () => {
  it('parses a request head; skips leading empty lines; waits for the end of the head', () => {
    const h = req('\r\nGET http://a.example/x HTTP/1.1\r\nHost: a.example\r\nX-A:  v \r\n\r\n')
    expect(h).toMatchObject({
      method: 'GET',
      target: 'http://a.example/x',
      minor: 1,
      fields: [
        ['host', 'a.example'],
        ['x-a', 'v'],
      ],
    })
    expect(parseRequestHead(Buffer.from('GET / HTTP/1.1\r\nhost: a\r\n'))).toBeUndefined()
  })

  it('refuses smuggling shapes', () => {
    const bad = [
      'GET / HTTP/1.1\r\nhost : a\r\n\r\n',
      'GET / HTTP/1.1\r\nhost: a\r\n folded\r\n\r\n',
      'GET / HTTP/1.1\r\nhost: a\rb\r\n\r\n',
      'GET / HTTP/1.1\r\nhost: a\nx: b\r\n\r\n',
      'GET /  HTTP/1.1\r\n\r\n',
      'GET / HTTP/2.0\r\n\r\n',
    ]
    for (const t of bad) expect(parseRequestHead(Buffer.from(t, 'latin1'))?.ok, JSON.stringify(t)).toBe(false)
    for (const t of [
      'POST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n',
      'POST / HTTP/1.1\r\ntransfer-encoding: chunked, chunked\r\n\r\n',
      'POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n',
      'POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n',
      'POST / HTTP/1.1\r\ncontent-length: 1, 2\r\n\r\n',
      'POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n',
      'POST / HTTP/1.1\r\ncontent-length: 0x10\r\n\r\n',
      // A framing field named hop-by-hop would be dropped after it framed the body.
      'GET / HTTP/1.1\r\ncontent-length: 5\r\nconnection: content-length\r\n\r\n',
      'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nconnection: keep-alive, Transfer-Encoding\r\n\r\n',
      'POST / HTTP/1.1\r\ntransfer-encoding:\r\ncontent-length: 3\r\n\r\n',
      'POST / HTTP/1.1\r\ntransfer-encoding: ,\r\n\r\n',
    ])
      expect(requestFraming(req(t)).ok, JSON.stringify(t)).toBe(false)
    expect(requestFraming(req('POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n'))).toEqual({
      ok: true,
      framing: { kind: 'length', length: 3 },
    })
    expect(parseRequestHead(Buffer.alloc(70 * 1024, 'a'))?.ok).toBe(false)
  })

  it('frames responses as RFC 9112 section 6.3 says', () => {
    expect(responseFraming(res('HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n'), 'HEAD')).toEqual({ ok: true, framing: { kind: 'none' } })
    expect(responseFraming(res('HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n'), 'GET')).toEqual({
      ok: true,
      framing: { kind: 'none' },
    })
    expect(responseFraming(res('HTTP/1.1 200 OK\r\n\r\n'), 'GET')).toEqual({ ok: true, framing: { kind: 'close' } })
    expect(responseFraming(res('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n'), 'GET')).toEqual({
      ok: true,
      framing: { kind: 'chunked' },
    })
    expect(responseFraming(res('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n'), 'GET').ok).toBe(false)
    for (const t of [
      'HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: content-length\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: transfer-encoding\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding:\r\n\r\n',
    ])
      expect(responseFraming(res(t), 'GET').ok, JSON.stringify(t)).toBe(false)
  })

  it('forwards no hop-by-hop field, nor one that Connection names', () => {
    const h = req(
      'GET / HTTP/1.1\r\nhost: a\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\nproxy-authorization: b\r\nkeep-alive: 5\r\nx-ok: 2\r\n\r\n',
    )
    expect(forwardHead('GET / HTTP/1.1', h.fields).toString()).toBe('GET / HTTP/1.1\r\nhost: a\r\nx-ok: 2\r\n\r\n')
  })
})
