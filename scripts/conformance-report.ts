/**
 * Reading and comparing the results of `conformance server -o <dir>` (the MCP conformance
 * suite writes one `server-<scenario>-<timestamp>/checks.json` per scenario). Pure: no
 * process, no network; scripts/conformance.ts drives it and test/scripts/conformance-report.test.ts checks it.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export type CheckStatus = 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | 'SKIPPED'

/** One configuration's results: scenario name -> the statuses of its checks, by check id (sorted). */
export type SuiteResult = Map<string, Map<string, CheckStatus[]>>

const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/

/** Read every scenario's `checks.json` under `dir`. Throws if the same scenario appears twice or a file is not a check list. */
export function readResults(dir: string): SuiteResult {
  const out: SuiteResult = new Map()
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue
    const m = RESULT_DIR.exec(entry.name)
    if (m === null) continue
    const scenario = m[1] as string
    if (out.has(scenario)) throw new Error(`scenario ${scenario} has two result folders in ${dir}`)
    const checks: unknown = JSON.parse(readFileSync(join(dir, entry.name, 'checks.json'), 'utf8'))
    if (!Array.isArray(checks)) throw new Error(`${entry.name}/checks.json is not an array of checks`)
    out.set(scenario, byCheck(checks as Array<{ id?: unknown; status?: unknown }>))
  }
  return out
}

function byCheck(checks: ReadonlyArray<{ id?: unknown; status?: unknown }>): Map<string, CheckStatus[]> {
  const m = new Map<string, CheckStatus[]>()
  for (const c of checks) {
    const id = String(c.id)
    // Informational entries (the requests and events the scenario logged) are no verdict.
    if (c.status === 'INFO') continue
    const list = m.get(id) ?? []
    list.push(c.status as CheckStatus)
    m.set(id, list)
  }
  for (const list of m.values()) list.sort()
  return m
}

export interface Figures {
  readonly scenarios: number
  /** Scenarios with no failed check (as the suite's own summary counts them). */
  readonly scenariosPassed: number
  /** Checks with a verdict (SUCCESS or FAILURE): the suite's denominator. */
  readonly checks: number
  readonly checksPassed: number
  readonly warnings: number
}

export function figures(r: SuiteResult): Figures {
  let scenariosPassed = 0
  let checks = 0
  let checksPassed = 0
  let warnings = 0
  for (const byId of r.values()) {
    let passed = 0
    let failed = 0
    for (const statuses of byId.values()) {
      for (const s of statuses) {
        if (s === 'SUCCESS') passed++
        else if (s === 'FAILURE') failed++
        else if (s === 'WARNING') warnings++
      }
    }
    checks += passed + failed
    checksPassed += passed
    if (failed === 0) scenariosPassed++
  }
  return { scenarios: r.size, scenariosPassed, checks, checksPassed, warnings }
}

/** The scenarios that passed (no failed check), sorted. */
export function passedScenarios(r: SuiteResult): string[] {
  return [...r.entries()]
    .filter(([, byId]) => ![...byId.values()].flat().includes('FAILURE'))
    .map(([name]) => name)
    .sort()
}

/** Every check whose statuses differ between two configurations, as `scenario/check: a -> b` lines (empty: same results). */
export function differences(expected: SuiteResult, actual: SuiteResult): string[] {
  const out: string[] = []
  const scenarios = new Set([...expected.keys(), ...actual.keys()])
  for (const scenario of [...scenarios].sort()) {
    const a = expected.get(scenario)
    const b = actual.get(scenario)
    if (a === undefined || b === undefined) {
      out.push(`${scenario}: ${a === undefined ? 'not run' : 'ran'} -> ${b === undefined ? 'not run' : 'ran'}`)
      continue
    }
    for (const id of [...new Set([...a.keys(), ...b.keys()])].sort()) {
      const x = (a.get(id) ?? []).join(',') || 'none'
      const y = (b.get(id) ?? []).join(',') || 'none'
      if (x !== y) out.push(`${scenario}/${id}: ${x} -> ${y}`)
    }
  }
  return out
}

/** Where two sorted name lists differ, as `+name` (only in `actual`) and `-name` (only in `expected`). */
export function listDifferences(expected: readonly string[], actual: readonly string[]): string[] {
  const e = new Set(expected)
  const a = new Set(actual)
  return [...[...e].filter((n) => !a.has(n)).map((n) => `-${n}`), ...[...a].filter((n) => !e.has(n)).map((n) => `+${n}`)]
}
