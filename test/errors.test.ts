import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  AgentTrustError,
  ERROR_CATALOG,
  ERROR_CLASSES,
  errorFromCode,
  isAgentTrustError,
  TokenExpired,
  TokenRevoked,
  type AgentTrustErrorCode,
} from 'agent-trust'
import * as errorsSubpath from 'agent-trust/errors'

const codes = Object.keys(ERROR_CATALOG) as AgentTrustErrorCode[]

describe('errors', () => {
  it.each(codes)('%s: name, code on class and instance, default message says what to fix', (code) => {
    const Ctor = ERROR_CLASSES[code]
    const e = new Ctor()
    expect(e.code).toBe(code)
    expect((Ctor as unknown as { code: string }).code).toBe(code)
    expect(e.name).toBe(ERROR_CATALOG[code].name)
    expect(e).toBeInstanceOf(AgentTrustError)
    expect(e).toBeInstanceOf(Ctor)
    expect(e).toBeInstanceOf(Error)
    expect(e.message.length).toBeGreaterThan(10)
    expect(isAgentTrustError(e)).toBe(true)
    expect(errorFromCode(code).code).toBe(code)
  })

  it('subclasses match on code, not on the class object (works across two copies of the package)', () => {
    const foreign = Object.assign(new Error('from another copy'), { code: 'ERR_TOKEN_REVOKED' })
    Object.defineProperty(foreign, Symbol.for('agent-trust.error'), { get: () => true })
    expect(foreign).toBeInstanceOf(TokenRevoked)
    expect(foreign).toBeInstanceOf(AgentTrustError)
    expect(foreign).not.toBeInstanceOf(TokenExpired)
    expect({ code: 'ERR_TOKEN_REVOKED' }).not.toBeInstanceOf(TokenRevoked)
    expect(null).not.toBeInstanceOf(AgentTrustError)
  })

  it('errors carry identifiers, and toJSON exposes no cause', () => {
    const e = new TokenRevoked(undefined, { details: { jti: 'abc' }, cause: new Error('internal secret') })
    expect(e.toJSON()).toEqual({ code: 'ERR_TOKEN_REVOKED', message: e.message, details: { jti: 'abc' } })
    expect(JSON.stringify(e.toJSON())).not.toContain('secret')
  })

  it('unknown wire codes become the generic error', () => {
    expect(errorFromCode('ERR_MADE_UP').code).toBe('ERR_GENERIC')
  })

  it('the subpath agent-trust/errors exports the same classes', () => {
    expect(errorsSubpath.TokenRevoked).toBe(TokenRevoked)
  })

  it('the README documents every code (Code | Class | HTTP | When | How to fix), as the catalogue has it', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    for (const code of codes) {
      const e = ERROR_CATALOG[code]
      expect(readme, code).toContain(`| \`${code}\` | \`${e.name}\` | ${e.status} | ${e.when} | ${e.fix} |`)
    }
  })
})
