import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { EgressDenied } from 'agent-trust/errors'
import { egressCovered, egressDenied, EgressPolicy, type EgressDecision } from 'agent-trust/egress'

const EGRESS = ['https://api.example.com', 'https://*.docs.example.org', 'http://10.0.0.5:8080', 'http://[fd12::5]:8080']
const policy = new EgressPolicy({ egress: EGRESS, trustLevel: 'L2' })

function rule(d: EgressDecision): string {
  return d.allowed ? 'allowed' : d.rule
}

describe('EgressPolicy.decideUrl: allowed', () => {
  it.each([
    'https://api.example.com/v1/docs?x=1#top',
    'https://API.EXAMPLE.COM/',
    'https://api.example.com./',
    'https://api.example.com:443/',
    'https://api。example。com/',
    'https://api%2Eexample%2Ecom/',
    'https://a.docs.example.org/',
    'https://a.b.docs.example.org/',
    'http://10.0.0.5:8080/',
    'http://0x0a.0.0.5:8080/',
    'http://[fd12:0:0:0:0:0:0:5]:8080/',
    // The backslash ends the authority for http(s): the host really is api.example.com.
    'https://api.example.com\\@evil.com/',
  ])('%s', (url) => {
    expect(rule(policy.decideUrl(url, 'GET'))).toBe('allowed')
  })
})

describe('EgressPolicy.decideUrl: bypass families', () => {
  const families: Record<string, Array<[string, string]>> = {
    'userinfo and @ # ? tricks': [
      ['https://api.example.com@evil.com/', 'userinfo'],
      ['https://api.example.com:443@evil.com/', 'userinfo'],
      ['https://user:pw@api.example.com/', 'userinfo'],
      ['https://api.example.com%40evil.com/', 'url-invalid'],
      ['https://evil.com#@api.example.com/', 'not-declared'],
      ['https://evil.com?@api.example.com/', 'not-declared'],
      ['https://evil.com/@api.example.com', 'not-declared'],
      ['https://evil.com\\@api.example.com/', 'not-declared'],
      ['https://evil.com%2f@api.example.com/', 'userinfo'],
    ],
    backslashes: [
      ['https:\\\\evil.com/', 'not-declared'],
      ['https:/\\evil.com/', 'not-declared'],
      ['https:\\/api.example.com.evil.com/', 'not-declared'],
    ],
    'parser differentials': [
      ['https://api.example.com%00.evil.com/', 'url-invalid'],
      ['https://api.example.com%2e.evil.com/', 'host-syntax'],
      ['https://api.example.com..evil.com/', 'host-syntax'],
      ['https://api.example.com.evil.com/', 'not-declared'],
      ['https://evil.com%2Eapi.example.com/', 'not-declared'],
      ['https://api.example.com$.evil.com/', 'host-syntax'],
      ['//api.example.com/', 'url-invalid'],
      ['https:api.example.com.evil.com', 'not-declared'],
    ],
    'trailing dots and case': [
      ['https://api.example.com../', 'host-syntax'],
      ['https://EVIL.com./', 'not-declared'],
      ['https://docs.example.org./', 'not-declared'],
    ],
    'IDN confusables': [
      ['https://аpi.example.com/', 'not-declared'],
      ['https://api.exаmple.com/', 'not-declared'],
      ['https://api.example.com\u2024evil.com/', 'url-invalid'],
      ['https://a.docs.exаmple.org/', 'not-declared'],
    ],
    'IPv4 number forms': [
      ['http://2130706433/', 'ip-literal'],
      ['http://0x7f000001/', 'ip-literal'],
      ['http://017700000001/', 'ip-literal'],
      ['http://127.1/', 'ip-literal'],
      ['http://0x7f.1/', 'ip-literal'],
      ['http://0177.0.0.1/', 'ip-literal'],
      ['http://0/', 'ip-literal'],
      ['http://10.0.0.5/', 'ip-literal'],
      ['http://167772165:8081/', 'ip-literal'],
      ['http://10.0.0.6:8080/', 'ip-literal'],
    ],
    'IPv6 literals and embedded IPv4': [
      ['http://[::1]/', 'ip-literal'],
      ['http://[::ffff:127.0.0.1]/', 'ip-literal'],
      ['http://[0:0:0:0:0:ffff:7f00:1]/', 'ip-literal'],
      ['http://[::127.0.0.1]/', 'ip-literal'],
      ['http://[64:ff9b::a9fe:a9fe]/', 'ip-literal'],
      ['http://[2002:a9fe:a9fe::]/', 'ip-literal'],
      ['http://[::ffff:10.0.0.5]:8080/', 'ip-literal'],
      ['http://[fd12::5]/', 'ip-literal'],
      ['http://[fe80::1%25eth0]/', 'url-invalid'],
    ],
    'metadata addresses': [
      ['http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'ip-literal'],
      ['http://[fd00:ec2::254]/latest/meta-data/', 'ip-literal'],
      ['http://metadata.google.internal/computeMetadata/v1/', 'not-declared'],
      ['http://100.100.100.200/latest/meta-data/', 'ip-literal'],
      ['http://0xa9fea9fe/', 'ip-literal'],
    ],
    'undeclared ports and schemes': [
      ['https://api.example.com:8443/', 'not-declared'],
      ['http://api.example.com/', 'not-declared'],
      ['http://api.example.com:443/', 'not-declared'],
      ['ftp://api.example.com/', 'scheme'],
      ['ws://api.example.com/', 'scheme'],
      ['wss://api.example.com/', 'scheme'],
      ['file:///etc/passwd', 'scheme'],
      ['data:text/plain,hello', 'scheme'],
      ['javascript:alert(1)', 'scheme'],
      ['gopher://api.example.com/', 'scheme'],
      ['https://10.0.0.5:8080/', 'ip-literal'],
    ],
    'wildcard suffix pitfalls': [
      ['https://docs.example.org/', 'not-declared'],
      ['https://evildocs.example.org/', 'not-declared'],
      ['https://adocs.example.org/', 'not-declared'],
      ['https://docs.example.org.evil.net/', 'not-declared'],
      ['https://a.docs.example.org.evil.net/', 'not-declared'],
      ['https://a.docs.example.org-evil.net/', 'not-declared'],
      ['https://evilexample.com/', 'not-declared'],
      ['https://example.com.evil.net/', 'not-declared'],
      ['http://a.docs.example.org/', 'not-declared'],
    ],
    'control characters': [
      ['https://api.example.com\t.evil.net/', 'control-character'],
      ['https://api.exa\nmple.com/', 'control-character'],
      ['https://api.example.com\r\nHost: evil.com/', 'control-character'],
      ['https://api.example.com\u0000/', 'control-character'],
      [' https://api.example.com/', 'control-character'],
      ['https://api.example.com/\u0085', 'control-character'],
      ['https://api.example.com\u2028/', 'control-character'],
      ['https://api.exam\u00adple.com/', 'control-character'],
      ['https://api.example.com\u200b/', 'control-character'],
    ],
  }
  for (const [family, cases] of Object.entries(families)) {
    describe(family, () => {
      it.each(cases)('%j -> %s', (url, expected) => {
        expect(rule(policy.decideUrl(url, 'GET'))).toBe(expected)
      })
    })
  }
})

describe('trust levels and the empty allowlist', () => {
  it('L0 has no egress at all', () => {
    const p = new EgressPolicy({ egress: EGRESS, trustLevel: 'L0' })
    expect(rule(p.decideUrl('https://api.example.com/', 'GET'))).toBe('trust-level')
  })

  it('L1 may only GET and HEAD (exact, case-sensitive method names)', () => {
    const p = new EgressPolicy({ egress: EGRESS, trustLevel: 'L1' })
    expect(rule(p.decideUrl('https://api.example.com/', 'GET'))).toBe('allowed')
    expect(rule(p.decideUrl('https://api.example.com/', 'HEAD'))).toBe('allowed')
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'get', 'Get', 'PROPFIND'])
      expect(rule(p.decideUrl('https://api.example.com/', m))).toBe('method')
  })

  it('L2 and L3 may use any method but never CONNECT or a non-token', () => {
    for (const level of ['L2', 'L3'] as const) {
      const p = new EgressPolicy({ egress: EGRESS, trustLevel: level })
      for (const m of ['POST', 'PUT', 'DELETE', 'PATCH']) expect(rule(p.decideUrl('https://api.example.com/', m))).toBe('allowed')
      for (const m of ['CONNECT', 'GET /x HTTP/1.1', '', 'PO ST']) expect(rule(p.decideUrl('https://api.example.com/', m))).toBe('method')
    }
  })

  it('a level given as a function is read on every decision', () => {
    let level: 'L0' | 'L1' | 'L2' = 'L2'
    const p = new EgressPolicy({ egress: EGRESS, trustLevel: () => level })
    expect(rule(p.decideUrl('https://api.example.com/', 'POST'))).toBe('allowed')
    level = 'L1'
    expect(rule(p.decideUrl('https://api.example.com/', 'POST'))).toBe('method')
    level = 'L0'
    expect(rule(p.decideUrl('https://api.example.com/', 'GET'))).toBe('trust-level')
  })

  it('an empty allowlist denies everything', () => {
    const p = new EgressPolicy({ egress: [], trustLevel: 'L3' })
    for (const u of ['https://api.example.com/', 'http://127.0.0.1/', 'https://example.com/'])
      expect(rule(p.decideUrl(u, 'GET'))).toBe('empty-allowlist')
  })

  it('refuses invalid declarations when built, naming positions, not values', () => {
    expect(() => new EgressPolicy({ egress: ['https://ok.example.com', 'https://secret@x.example.com'], trustLevel: 'L2' })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.not.stringContaining('secret') }),
    )
    expect(() => new EgressPolicy({ egress: [], trustLevel: 'L9' as 'L2' })).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
    )
  })
})

describe('decideDispatch (what undici hands an interceptor)', () => {
  it('requires a bare origin and an origin-form path', () => {
    expect(rule(policy.decideDispatch('https://api.example.com', '/x?y=1', 'GET'))).toBe('allowed')
    expect(rule(policy.decideDispatch(new URL('https://api.example.com'), '/', 'GET'))).toBe('allowed')
    expect(rule(policy.decideDispatch('https://api.example.com', 'http://evil.com/', 'GET'))).toBe('path')
    expect(rule(policy.decideDispatch('https://api.example.com', '*', 'OPTIONS'))).toBe('path')
    expect(rule(policy.decideDispatch('https://api.example.com', '/a b', 'GET'))).toBe('path')
    expect(rule(policy.decideDispatch('https://api.example.com', '/a\r\nHost: evil.com', 'GET'))).toBe('path')
    expect(rule(policy.decideDispatch('https://api.example.com/extra', '/', 'GET'))).toBe('url-invalid')
    expect(rule(policy.decideDispatch('https://u:p@api.example.com', '/', 'GET'))).toBe('userinfo')
    expect(rule(policy.decideDispatch(undefined, '/', 'GET'))).toBe('url-invalid')
  })
})

describe('connect-time decisions', () => {
  it('matches the socket target and classifies every resolved address', () => {
    const c = policy.decideConnect('https:', 'api.example.com', '')
    expect(c.allowed).toBe(true)
    if (!c.allowed) return
    expect(rule(policy.decideAddresses(c, ['93.184.216.34', '2606:2800:220:1::1']))).toBe('allowed')
    expect(rule(policy.decideAddresses(c, ['10.0.0.1']))).toBe('address')
    expect(rule(policy.decideAddresses(c, ['93.184.216.34', '10.0.0.1']))).toBe('address')
    expect(rule(policy.decideAddresses(c, []))).toBe('resolve-failed')
    expect(rule(policy.decideConnect('http:', 'fd12::5', '8080'))).toBe('allowed')
    expect(rule(policy.decideConnect('http:', '10.0.0.5', 8080))).toBe('allowed')
    expect(rule(policy.decideConnect('http:', '10.0.0.5', '8081'))).toBe('ip-literal')
    expect(rule(policy.decideConnect('http:', 'evil.com', ''))).toBe('not-declared')
  })
})

describe('the coded error', () => {
  it('names the host and the rule, and nothing from the request', () => {
    const d = policy.decideUrl('https://external-api.com/upload?token=SECRET', 'POST')
    expect(d.allowed).toBe(false)
    if (d.allowed) return
    const err = egressDenied(d, 'agent-summarizer-v2')
    expect(err).toBeInstanceOf(EgressDenied)
    expect(err.code).toBe('ERR_EGRESS_DENIED')
    expect(err.details).toMatchObject({ host: 'external-api.com', rule: 'not-declared', agentId: 'agent-summarizer-v2' })
    expect(err.message).toContain('external-api.com')
    expect(JSON.stringify(err.toJSON())).not.toMatch(/SECRET|upload/)
  })
})

// ---- properties ------------------------------------------------------------------------

/** An independent oracle: what undici would connect to, and whether the allowlist has it. */
function declaredByOracle(raw: string): boolean {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return false
  }
  if (u.username !== '' || u.password !== '') return false
  const host = u.hostname.replace(/\.$/, '')
  const port = u.port === '' ? (u.protocol === 'https:' ? '443' : '80') : u.port
  if (u.protocol === 'https:' && port === '443' && host === 'api.example.com') return true
  if (u.protocol === 'https:' && port === '443' && host.endsWith('.docs.example.org')) return true
  if (u.protocol === 'http:' && port === '8080' && (host === '10.0.0.5' || host === '[fd12::5]')) return true
  return false
}

describe('properties', () => {
  it('no generated web URL outside the declared destinations is ever allowed', () => {
    const url = fc.webUrl({
      validSchemes: ['http', 'https'],
      withQueryParameters: true,
      withFragments: true,
      authoritySettings: { withIPv4: true, withIPv6: true, withIPv4Extended: true, withPort: true, withUserInfo: true },
    })
    fc.assert(
      fc.property(url, (u) => {
        if (policy.decideUrl(u, 'GET').allowed) expect(declaredByOracle(u)).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })

  it('no mutation of a declared URL reaches another host', () => {
    const base = 'https://api.example.com/v1/docs'
    const noise = fc.oneof(
      fc.constantFrom(
        '@',
        '#',
        '?',
        '/',
        '\\',
        '.',
        ':',
        '%2e',
        '%40',
        '%00',
        '\t',
        '\n',
        ' ',
        '..',
        'evil.com',
        'а',
        '\u3002',
        '[',
        ']',
        '*',
        '0x',
        '%',
        '\u200b',
        'xn--',
      ),
      fc.string({ maxLength: 4, unit: 'binary' }),
    )
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: base.length }), noise), { maxLength: 4 }), (edits) => {
        let u = base
        for (const [at, s] of edits) u = u.slice(0, at) + s + u.slice(at)
        if (policy.decideUrl(u, 'GET').allowed) expect(declaredByOracle(u)).toBe(true)
      }),
      { numRuns: 3000 },
    )
  })

  it('any string at all: allowed implies declared', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60, unit: 'grapheme-ascii' }), fc.string({ maxLength: 30, unit: 'binary' }), (a, b) => {
        for (const u of [`https://${a}`, `https://api.example.com${b}`, `${b}https://${a}.docs.example.org`, a]) {
          if (policy.decideUrl(u, 'GET').allowed) expect(declaredByOracle(u)).toBe(true)
        }
      }),
      { numRuns: 2000 },
    )
  })

  it('egressCovered is sound: whatever a covered child allows, its parent allows', () => {
    const label = fc.stringMatching(/^[a-z0-9]{1,6}$/)
    const host = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'))
    const entry = fc
      .tuple(fc.constantFrom('http', 'https'), fc.boolean(), host, fc.constantFrom('', ':8080'), fc.boolean())
      .map(([s, w, h, p, i]) => `${s}://${w && h.includes('.') ? '*.' : ''}${h}${p}${i ? ' internal' : ''}`)
    fc.assert(
      fc.property(
        fc.array(entry, { minLength: 1, maxLength: 3 }),
        entry,
        fc.array(fc.tuple(fc.constantFrom('http', 'https'), host, fc.constantFrom('', ':8080')), { maxLength: 6 }),
        (parent, child, probes) => {
          if (!egressCovered(parent, child)) return
          const pc = new EgressPolicy({ egress: [child], trustLevel: 'L2' })
          const pp = new EgressPolicy({ egress: parent, trustLevel: 'L2' })
          for (const [s, h, p] of [
            ...probes,
            ['https', `x.${child.replace(/^\w+:\/\/(\*\.)?/, '').replace(/[: ].*$/, '')}`, ''],
          ] as const) {
            const u = `${s}://${h}${p}/`
            const dc = pc.decideUrl(u, 'GET')
            if (!dc.allowed) continue
            const dp = pp.decideUrl(u, 'GET')
            expect(dp.allowed).toBe(true)
            if (dc.internal && dp.allowed) expect(dp.internal).toBe(true)
          }
        },
      ),
      { numRuns: 1500 },
    )
  })
})
