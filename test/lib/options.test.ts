/** parseOptions: one ERR_CONFIG_INVALID naming the factory and each path, never a value. */
import { generateKeyPairSync, webcrypto } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { cryptoKey, echoKey, fn, optionPath, optionProblem, parseOptions, withMethods } from '../../src/lib/options.js'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'

const Schema = z.strictObject({
  name: z.string().min(1),
  token: z.string().min(8),
  nested: z.strictObject({ port: z.int().min(1).max(65535) }).optional(),
  store: withMethods<{ get(): void; set(): void }>('get', 'set').optional(),
  onEvent: fn().optional(),
  key: cryptoKey().optional(),
})

const parse = (input: unknown): unknown => parseOptions('createThing', Schema, input)

describe('parseOptions', () => {
  it('returns the parsed options of a valid call, objects kept by identity', () => {
    const store = { get() {}, set() {} }
    const out = parse({ name: 'a', token: 'secret-token-1', store }) as { store: unknown }
    expect(out.store).toBe(store)
  })

  it('names the factory, the path and what is expected; never the value', async () => {
    const err = await expectOptionMisuse(() => parse({ name: 'a', token: 'short-secret'.slice(0, 5) }), {
      path: 'token',
      secrets: ['short'],
    })
    expect(err.message).toMatch(/^createThing: invalid options:/)
    expect(err.message).toMatch(/token: .*>=8/)
    expect(err.details).toMatchObject({ rule: 'options', issues: 1, path: 'token' })
  })

  it('reports a missing required option as required', async () => {
    const err = await expectOptionMisuse(() => parse({ token: 'secret-token-1' }), { path: 'name' })
    expect(err.message).toContain('name: is required (expected string)')
    await expectOptionMisuse(() => parse(undefined), { path: 'name' })
  })

  it('refuses an unknown key and lists the accepted ones', async () => {
    const err = await expectOptionMisuse(() => parse({ name: 'a', token: 'secret-token-1', nested: { prot: 1 } }), {
      path: 'nested.prot',
      secrets: ['secret-token-1'],
    })
    expect(err.message).toContain('nested.prot: unknown option (expected one of: port)')
  })

  it('escapes and caps a hostile key name', async () => {
    const err = await expectOptionMisuse(() => parse({ name: 'a', token: 'secret-token-1', [HOSTILE_KEY]: 1 }), {
      path: HOSTILE_KEY_PATH,
    })
    expect(err.message).not.toContain('\n[fake]')
    const long = 'k'.repeat(5000)
    const e2 = await expectOptionMisuse(() => parse({ name: 'a', token: 'secret-token-1', [long]: 1 }), { path: 'k'.repeat(48) })
    expect(e2.message.length).toBeLessThan(400)
  })

  it('checks methods, functions and keys', async () => {
    await expectOptionMisuse(() => parse({ name: 'a', token: 'secret-token-1', store: { get() {} } }), { path: 'store' })
    await expectOptionMisuse(() => parse({ name: 'a', token: 'secret-token-1', onEvent: 'x' }), { path: 'onEvent' })
    await expectOptionMisuse(() => parse({ name: 'a', token: 'secret-token-1', key: { type: 'private' } }), { path: 'key' })
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    expect(() => parse({ name: 'a', token: 'secret-token-1', key: pair.privateKey })).not.toThrow()
    const web = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
    expect(() => parse({ name: 'a', token: 'secret-token-1', key: web.privateKey })).not.toThrow()
  })

  it('lists at most 8 problems and counts the rest', async () => {
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`typo${i}`, 1]))
    const err = await expectOptionMisuse(() => parse({ name: 'a', token: 'secret-token-1', ...many }), { path: 'typo0' })
    expect(err.message).toContain('and 12 more')
    expect(err.details).toMatchObject({ issues: 20 })
  })

  it('reports a problem found after parsing in the same shape, with its cause', async () => {
    const cause = new Error('inner')
    const err = await expectOptionMisuse(
      () => {
        throw optionProblem('createThing', ['tls', 'credentials', 'cert'], 'expected an agent certificate', cause)
      },
      { path: 'tls.credentials.cert' },
    )
    expect(err.message).toBe('createThing: invalid options:\n  - tls.credentials.cert: expected an agent certificate')
    expect(err.details).toMatchObject({ rule: 'options', issues: 1, path: 'tls.credentials.cert' })
    expect(err.cause).toBe(cause)
    await expectOptionMisuse(
      () => {
        throw optionProblem('createThing', [HOSTILE_KEY], 'expected nothing')
      },
      { path: HOSTILE_KEY_PATH },
    )
  })

  it('renders paths unambiguously', () => {
    expect(optionPath(['a', 0, 'b'])).toBe('a[0].b')
    expect(optionPath(['a', 'we"ird key'])).toBe('a["we\\"ird key"]')
    expect(echoKey('\u2028')).toBe('\\u2028')
    expect(echoKey('\u{1f600}')).toBe('\\ud83d\\ude00')
  })
})
