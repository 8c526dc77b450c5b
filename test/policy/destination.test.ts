import { describe, expect, it } from 'vitest'
import { Authority } from 'agent-trust'
import { destinationCovers, egressCovered, normalizeHost, parseDestination, tryParseDestination } from 'agent-trust/egress'

describe('parseDestination', () => {
  it.each([
    ['https://api.example.com', 'https://api.example.com', 443],
    ['HTTPS://API.Example.COM/', 'https://api.example.com', 443],
    ['https://api.example.com.', 'https://api.example.com', 443],
    ['https://api.example.com:443', 'https://api.example.com', 443],
    ['http://api.example.com:8080', 'http://api.example.com:8080', 8080],
    ['https://*.example.com', 'https://*.example.com', 443],
    ['https://bücher.example', 'https://xn--bcher-kva.example', 443],
    ['https://ｅｘａｍｐｌｅ.com', 'https://example.com', 443],
    ['http://127.0.0.1:8080', 'http://127.0.0.1:8080', 8080],
    ['http://[::1]:8080', 'http://[::1]:8080', 8080],
    ['http://agent-database-reader:8080 internal', 'http://agent-database-reader:8080 internal', 8080],
  ])('%s -> %s', (input, text, port) => {
    const d = parseDestination(input)
    expect(d.text).toBe(text)
    expect(d.port).toBe(port)
  })

  it('normalizes IPv4 number forms in declarations the way undici does', () => {
    expect(parseDestination('http://0x7f.1:8080').host).toBe('127.0.0.1')
    expect(parseDestination('http://2130706433:8080').host).toBe('127.0.0.1')
  })

  it.each([
    ['', 'empty'],
    ['api.example.com', 'no scheme'],
    ['ftp://api.example.com', 'scheme'],
    ['ws://api.example.com', 'scheme'],
    ['https://user:pw@api.example.com', 'userinfo'],
    ['https://api.example.com@evil.com', 'userinfo'],
    ['https://api.example.com/path', 'path'],
    ['https://api.example.com?x=1', 'query'],
    ['https://api.example.com#frag', 'fragment'],
    ['https://api.example.com\\@evil.com', 'backslash'],
    ['https://api%2eexample.com', 'percent'],
    ['https://api.exa\tmple.com', 'tab'],
    ['https://api.example.com\n', 'newline'],
    ['https://api.exam\u200bple.com', 'zero width'],
    ['https://*.com', 'one-label wildcard'],
    ['https://*', 'bare wildcard'],
    ['https://a.*.example.com', 'inner wildcard'],
    ['https://*example.com', 'partial wildcard'],
    ['https://*.127.0.0.1', 'wildcard IP'],
    ['https://a$b.example.com', 'odd char'],
    ['https://a..b.example.com', 'empty label'],
    ['https://api.example.com:0', 'port 0'],
    ['https://api.example.com:65536', 'port range'],
    ['https://api.example.com internal internal', 'twice'],
    ['https://api.example.com  internal', 'double space'],
    ['https://api.example.com public', 'unknown option'],
    ['http://127.0.0.1:8080 internal', 'internal on a literal'],
    ['https://[fe80::1%25eth0]', 'zone id'],
  ])('refuses %j (%s)', (input) => {
    expect(tryParseDestination(input).ok).toBe(false)
    expect(() => parseDestination(input)).toThrow(TypeError)
  })

  it('never echoes the entry in the error', () => {
    expect(() => parseDestination('https://secret-token@api.example.com')).toThrow(/^invalid egress destination: [^@]*$/)
  })
})

describe('normalizeHost', () => {
  it('drops one trailing dot, lowercases, tells names from literals', () => {
    expect(normalizeHost('API.Example.com.')).toEqual({ host: 'api.example.com', kind: 'name' })
    expect(normalizeHost('127.0.0.1')).toEqual({ host: '127.0.0.1', kind: 'ipv4' })
    expect(normalizeHost('::1')).toEqual({ host: '[::1]', kind: 'ipv6' })
    expect(normalizeHost('[::ffff:7f00:1]')).toEqual({ host: '[::ffff:7f00:1]', kind: 'ipv6' })
    for (const bad of ['', 'a..b', 'example.com..', '.example.com', 'a b.com', 'x.123', '999.1.1.1', 'fe80::1%eth0'])
      expect(normalizeHost(bad)).toBeUndefined()
  })
})

describe('coverage (one place for destination semantics)', () => {
  const p = (s: string) => parseDestination(s)
  it('wildcards cover subdomains on a label boundary only', () => {
    expect(destinationCovers(p('https://*.example.com'), p('https://a.example.com'))).toBe(true)
    expect(destinationCovers(p('https://*.example.com'), p('https://a.b.example.com'))).toBe(true)
    expect(destinationCovers(p('https://*.example.com'), p('https://*.b.example.com'))).toBe(true)
    expect(destinationCovers(p('https://*.example.com'), p('https://*.example.com'))).toBe(true)
    expect(destinationCovers(p('https://*.example.com'), p('https://example.com'))).toBe(false)
    expect(destinationCovers(p('https://*.example.com'), p('https://evilexample.com'))).toBe(false)
    expect(destinationCovers(p('https://*.example.com'), p('https://example.com.evil.net'))).toBe(false)
    expect(destinationCovers(p('https://a.example.com'), p('https://*.a.example.com'))).toBe(false)
  })

  it('scheme, port and internal must agree', () => {
    expect(destinationCovers(p('https://api.example.com'), p('http://api.example.com'))).toBe(false)
    expect(destinationCovers(p('https://api.example.com'), p('https://api.example.com:8443'))).toBe(false)
    expect(destinationCovers(p('https://api.example.com'), p('https://api.example.com internal'))).toBe(false)
    expect(destinationCovers(p('https://api.example.com internal'), p('https://api.example.com'))).toBe(true)
    expect(destinationCovers(p('http://127.0.0.1:80'), p('http://127.0.0.1'))).toBe(true)
    expect(destinationCovers(p('https://*.example.com'), p('https://[::1]'))).toBe(false)
  })

  it('egressCovered fails closed on anything unparsable', () => {
    expect(egressCovered(['https://*.internal.example'], 'https://db.internal.example')).toBe(true)
    expect(egressCovered(['https://*.internal.example'], 'HTTPS://DB.internal.example.')).toBe(true)
    expect(egressCovered(['https://*.internal.example'], 'https://db.internal.example/path')).toBe(false)
    expect(egressCovered(['not a destination', 'https://*.internal.example'], 'https://x.internal.example')).toBe(true)
    expect(egressCovered([], 'https://x.internal.example')).toBe(false)
  })

  it("Authority.spawn uses it: a child may not widen its parent's egress", async () => {
    const authority = await Authority.create({
      manifest: {
        agents: [
          {
            id: 'orchestrator',
            trustLevel: 'L3',
            grants: ['db:read:x'],
            maxDelegationDepth: 2,
            egress: ['https://*.internal.example', 'http://db.corp:5432 internal'],
          },
        ],
      },
    })
    const child = { trustLevel: 'L2' as const, grants: ['db:read:x'] }
    await expect(
      authority.spawn({
        parent: 'orchestrator',
        child: { ...child, id: 'c1', egress: ['https://api.internal.example', 'http://db.corp:5432 internal'] },
      }),
    ).resolves.toMatchObject({ id: 'c1' })
    for (const [i, egress] of [
      ['https://internal.example'],
      ['https://evilinternal.example'],
      ['http://api.internal.example'],
      ['https://api.internal.example internal'],
      ['http://db.corp:5433'],
    ].entries()) {
      await expect(authority.spawn({ parent: 'orchestrator', child: { ...child, id: `bad-${i}`, egress } })).rejects.toMatchObject({
        code: 'ERR_SPAWN_ESCALATION',
      })
    }
  })
})
