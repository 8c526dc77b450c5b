/** The one denial table: every code's status and challenge, decided once (RFC 6750 section 3, RFC 9728). */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ERROR_CATALOG, errorFromCode, type AgentTrustErrorCode } from 'agent-trust'
import { bearerChallenge, denialAnswer, statusOf } from 'agent-trust/http'

const codes = Object.keys(ERROR_CATALOG) as AgentTrustErrorCode[]
const tokenCodes = codes.filter((c) => c.startsWith('ERR_TOKEN_') && c !== 'ERR_TOKEN_MISSING').concat(['ERR_AGENT_REVOKED'])

describe('denial table', () => {
  it('a token that does not verify is 401 invalid_token, with the resource metadata URL', () => {
    for (const code of tokenCodes) {
      const a = denialAnswer(errorFromCode(code), {
        realm: 'srv',
        resourceMetadata: 'https://srv.example/.well-known/oauth-protected-resource',
      })
      expect(a.status, code).toBe(401)
      expect(a.headers['www-authenticate'], code).toBe(
        'Bearer realm="srv", error="invalid_token", resource_metadata="https://srv.example/.well-known/oauth-protected-resource"',
      )
    }
  })

  it('no token is 401 with a challenge but no error code (RFC 6750 section 3.1)', () => {
    expect(denialAnswer(errorFromCode('ERR_TOKEN_MISSING'), { realm: 'srv' }).headers['www-authenticate']).toBe('Bearer realm="srv"')
    expect(denialAnswer(errorFromCode('ERR_PEER_UNAUTHENTICATED'), { realm: 'srv' })).toMatchObject({ status: 401 })
  })

  it('a valid token without the level or scope is 403 insufficient_scope naming the required scope', () => {
    for (const code of ['ERR_SCOPE_DENIED', 'ERR_TRUST_LEVEL'] as const) {
      const a = denialAnswer(errorFromCode(code), { realm: 'srv', requiredScope: 'db:read:x' })
      expect(a.status).toBe(403)
      expect(a.headers['www-authenticate']).toBe('Bearer realm="srv", error="insufficient_scope", scope="db:read:x"')
    }
  })

  it('store and authority outages are 503 with Retry-After; no challenge', () => {
    for (const code of ['ERR_STORE_UNAVAILABLE', 'ERR_AUTHORITY_UNAVAILABLE'] as const) {
      const a = denialAnswer(errorFromCode(code))
      expect(a).toMatchObject({ status: 503 })
      expect(a.headers['retry-after']).toBe('1')
      expect(a.headers['www-authenticate']).toBeUndefined()
    }
  })

  it('every code has exactly one status, and only 401/403 codes carry a challenge', () => {
    for (const code of codes) {
      const s = statusOf(code)
      expect([400, 401, 403, 500, 503]).toContain(s)
      if (s !== 401 && s !== 403) expect(bearerChallenge(code, { realm: 'x' }), code).toBeUndefined()
      if (s === 401) expect(bearerChallenge(code, { realm: 'x' }), code).toMatch(/^Bearer /)
    }
  })

  it('the default body names the code with the generic text only', () => {
    const err = errorFromCode('ERR_TOKEN_EXPIRED', 'secret-looking detail eyJhbGciOi')
    const body = JSON.parse(denialAnswer(err).body)
    expect(body).toEqual({ error: { code: 'ERR_TOKEN_EXPIRED', message: ERROR_CATALOG.ERR_TOKEN_EXPIRED.when } })
  })

  it('caller-influenced challenge parameters can never break out of their quoted-string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (realm, scope) => {
        const h = bearerChallenge('ERR_SCOPE_DENIED', { realm, requiredScope: scope }) as string
        expect(h).toMatch(
          /^Bearer realm="[\x20-\x21\x23-\x5b\x5d-\x7e]*", error="insufficient_scope", scope="[\x20-\x21\x23-\x5b\x5d-\x7e]*"$/,
        )
      }),
    )
  })
})
