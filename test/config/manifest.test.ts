import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { loadManifestFile, parseManifest, resolveMode } from 'agent-trust'
import { resetModeWarning } from '../../src/config/mode.js'
import { MANIFEST } from '../support/kernel.js'

describe('manifest', () => {
  it('parses the seed manifest with defaults and freezes it', () => {
    const m = parseManifest(MANIFEST)
    expect(m.authority).toMatchObject({ id: 'moltbot-authority', tokenTtlSeconds: 60, clockToleranceSeconds: 5, keyRotationHours: 24 })
    expect(Object.isFrozen(m.agents[0])).toBe(true)
    expect(() => (m.agents as unknown as unknown[]).push({})).toThrow()
  })

  it('lists every problem with its path in one ERR_CONFIG_INVALID and never echoes values', () => {
    const secret = 'redis://:sup3rs3cret@redis.internal:6379'
    const bad = {
      authority: { id: 'a', tokenTtlSeconds: 301, clockToleranceSeconds: 31 },
      agents: [
        { id: 'dup', trustLevel: 'L2' },
        { id: 'dup', trustLevel: 'L9', grants: ['db:re*'] },
        { id: 'child', trustLevel: 'L3', parent: 'dup', grants: ['x:y'] },
        { id: 'has space', trustLevel: 'L1', egress: [secret], extra: secret },
      ],
    }
    let err: any
    try {
      parseManifest(bad)
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'ERR_CONFIG_INVALID' })
    const msg: string = err.message
    for (const path of [
      'authority.tokenTtlSeconds',
      'authority.clockToleranceSeconds',
      'agents[1].trustLevel',
      'agents[1].grants[0]',
      'agents[3].id',
    ])
      expect(msg).toContain(path)
    expect(msg).not.toContain('sup3rs3cret')
  })

  it('checks cross-agent rules: duplicates, parents, child within parent', () => {
    const m = {
      agents: [
        { id: 'p', trustLevel: 'L2', grants: ['a:b'] },
        { id: 'p', trustLevel: 'L1' },
        { id: 'c', trustLevel: 'L3', parent: 'p', grants: ['a:c'] },
        { id: 'd', trustLevel: 'L1', parent: 'ghost' },
      ],
    }
    expect(() => parseManifest(m)).toThrow(/duplicates another agent id[\s\S]*only an L3 agent may be a parent|only an L3[\s\S]*duplicates/)
    expect(() => parseManifest(m)).toThrow(/names no agent/)
  })

  it('loads a JSON file, and a bad file fails without quoting it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'at-manifest-'))
    const good = join(dir, 'agent-trust.config.json')
    writeFileSync(good, JSON.stringify(MANIFEST))
    expect(loadManifestFile(good).agents.length).toBe(6)
    const bad = join(dir, 'bad.json')
    writeFileSync(bad, '{"agents": [ password=hunter2')
    expect(() => loadManifestFile(bad)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_INVALID', message: expect.not.stringContaining('hunter2') }),
    )
    expect(() => loadManifestFile(join(dir, 'missing.json'))).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
  })

  it('a JSON syntax error names its line and column and what is wrong there, never the text', () => {
    const dir = mkdtempSync(join(tmpdir(), 'at-manifest-'))
    const cases: [string, number, number, RegExp][] = [
      ['{\n  "agents": [\n    { "id": "a", "trustLevel": "L1", }\n  ]\n}', 3, 38, /trailing comma before '\}'/],
      ['{\n  "agents": []\n  "version": 1\n}', 3, 3, /expected ',' or '\}'/],
      ['{"agents": [ password=hunter2', 1, 14, /unexpected character/],
      ['{"agents": [', 1, 13, /unexpected end of input/],
      ["{'agents': []}", 1, 2, /double quotes/],
      ['{"agents": "a\tb"}', 1, 14, /control character/],
      ['{"agents": []} x', 1, 16, /after the end/],
      ['\uFEFF{"agents": []}', 1, 1, /byte order mark/],
    ]
    for (const [text, line, column, problem] of cases) {
      const file = join(dir, 'm.json')
      writeFileSync(file, text)
      let err: (Error & { code?: string; details?: Record<string, unknown> }) | undefined
      try {
        loadManifestFile(file)
      } catch (e) {
        err = e as typeof err
      }
      expect(err?.code, text).toBe('ERR_CONFIG_INVALID')
      expect(err?.message, text).toContain(`at line ${line}, column ${column}`)
      expect(err?.message, text).toMatch(problem)
      expect(err?.message).not.toContain('hunter2')
      expect(err?.details).toMatchObject({ rule: 'json', line, column })
    }
  })
})

describe('AGENT_TRUST mode', () => {
  afterEach(() => resetModeWarning())

  it('defaults to enforce and accepts audit', () => {
    expect(resolveMode(undefined, {})).toBe('enforce')
    expect(resolveMode(undefined, { AGENT_TRUST: 'audit' })).toBe('audit')
    expect(resolveMode(' ENFORCE ', {})).toBe('enforce')
  })

  it('rejects unknown values instead of weakening enforcement', () => {
    for (const v of ['disabled', 'false', '0', 'enforcing'])
      expect(() => resolveMode(v, {})).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }))
  })

  it('off warns loudly, once', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined)
    expect(resolveMode(undefined, { AGENT_TRUST: 'off' })).toBe('off')
    expect(resolveMode('off', {})).toBe('off')
    expect(warn).toHaveBeenCalledTimes(1)
    expect(String(warn.mock.calls[0]?.[0])).toMatch(/check and record nothing[\s\S]*verifier.verify\(\) still enforces/)
    warn.mockClear()
  })
})
