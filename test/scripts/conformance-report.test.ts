/**
 * The comparison behind the conformance run in CI (scripts/conformance.ts): it reads the
 * suite's result folders and must report every check whose outcome changed, so a guard that
 * stops being protocol-transparent fails the run.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { differences, figures, listDifferences, passedScenarios, readResults } from '../../scripts/conformance-report.js'

const root = mkdtempSync(join(tmpdir(), 'agent-trust-conformance-report-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

let n = 0
/** A results folder as `conformance server -o` writes it. */
function results(scenarios: Record<string, Array<[string, string]>>): string {
  const dir = join(root, String(n++))
  for (const [scenario, checks] of Object.entries(scenarios)) {
    const sub = join(dir, `server-${scenario}-2026-12-07T12-17-35-592Z`)
    mkdirSync(sub, { recursive: true })
    writeFileSync(join(sub, 'checks.json'), JSON.stringify(checks.map(([id, status]) => ({ id, status, name: id }))))
  }
  return dir
}

const BARE = {
  'tools-call-with-progress': [['tools-call-with-progress', 'SUCCESS']],
  'json-schema-2020-12': [
    ['outgoing-request', 'INFO'],
    ['json-schema-2020-12-$defs', 'SUCCESS'],
    ['json-schema-2020-12-$schema', 'SUCCESS'],
  ],
  'server-sse-polling': [
    ['server-sse-priming-event', 'WARNING'],
    ['incoming-sse-event', 'INFO'],
  ],
} satisfies Record<string, Array<[string, string]>>

describe('conformance results', () => {
  it('reads each scenario (names with dates and digits kept whole) and counts as the suite does', () => {
    const r = readResults(results(BARE))
    expect([...r.keys()].sort()).toEqual(['json-schema-2020-12', 'server-sse-polling', 'tools-call-with-progress'])
    // INFO entries are no verdict; a scenario with only warnings has no failure, so it passes.
    expect(figures(r)).toEqual({ scenarios: 3, scenariosPassed: 3, checks: 3, checksPassed: 3, warnings: 1 })
    expect(passedScenarios(r)).toEqual(['json-schema-2020-12', 'server-sse-polling', 'tools-call-with-progress'])
  })

  it('same outcomes: no difference', () => {
    expect(differences(readResults(results(BARE)), readResults(results(BARE)))).toEqual([])
  })

  it('a check that fails only when guarded is reported, with its scenario', () => {
    const guarded = { ...BARE, 'tools-call-with-progress': [['tools-call-with-progress', 'FAILURE']] } satisfies typeof BARE
    const r = readResults(results(guarded))
    expect(differences(readResults(results(BARE)), r)).toEqual(['tools-call-with-progress/tools-call-with-progress: SUCCESS -> FAILURE'])
    expect(passedScenarios(r)).not.toContain('tools-call-with-progress')
  })

  it('a check that disappears, a new warning and a scenario that did not run are reported', () => {
    const guarded = {
      'tools-call-with-progress': [['tools-call-with-progress', 'SUCCESS']],
      'json-schema-2020-12': [['json-schema-2020-12-$schema', 'SUCCESS']],
      'server-sse-polling': [
        ['server-sse-priming-event', 'WARNING'],
        ['server-sse-retry-field', 'WARNING'],
      ],
    } satisfies Record<string, Array<[string, string]>>
    expect(differences(readResults(results(BARE)), readResults(results(guarded)))).toEqual([
      'json-schema-2020-12/json-schema-2020-12-$defs: SUCCESS -> none',
      'server-sse-polling/server-sse-retry-field: none -> WARNING',
    ])
    const { 'server-sse-polling': _dropped, ...fewer } = BARE
    expect(differences(readResults(results(BARE)), readResults(results(fewer)))).toEqual(['server-sse-polling: ran -> not run'])
  })

  it('a scenario passing that should not (or the reverse) is reported', () => {
    expect(listDifferences(['ping', 'server-initialize'], ['ping', 'server-initialize'])).toEqual([])
    expect(listDifferences(['ping', 'server-initialize'], ['ping', 'tools-list'])).toEqual(['-server-initialize', '+tools-list'])
  })

  it('two result folders for one scenario are refused, not merged', () => {
    const dir = results(BARE)
    const again = join(dir, 'server-tools-call-with-progress-2026-12-07T12-17-36-000Z')
    mkdirSync(again)
    writeFileSync(join(again, 'checks.json'), '[]')
    expect(() => readResults(dir)).toThrow(/two result folders/)
  })
})
