/**
 * The import graph reads as the layers, bottom to top. A module may import its own layer
 * and the layers below it, never one above; no cycles anywhere.
 *
 *   0 foundation   src/errors.ts, src/lib/
 *   1 policy       src/policy/            pure: no node:, no packages, no I/O
 *   2 config       src/config/
 *   3 state        src/tokens/, src/keys/, src/revocation/, src/audit/
 *   4 kernel       src/verifier/, src/authority/
 *   5 transports   src/http/, src/egress/, src/identity/, src/authority-service/, src/cli/, src/sandbox/
 *   6 adapters     adapters/
 *   faces          src/index.ts, src/internal.ts (entry points; nothing in src imports them but adapters)
 */
const layers = [
  ['^src/errors\\.ts$', '^src/lib/'],
  ['^src/policy/'],
  ['^src/config/'],
  ['^src/(tokens|keys|revocation|audit)/'],
  ['^src/(verifier|authority)/'],
  ['^src/(http|egress|identity|authority-service|cli|sandbox)/'],
  ['^adapters/'],
]
const join = (patterns) => patterns.join('|')
const forbidden = [
  { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
  {
    name: 'policy-is-pure',
    comment: 'src/policy decides; it imports nothing but other policy modules and the error catalogue.',
    severity: 'error',
    from: { path: '^src/policy/' },
    to: { pathNot: ['^src/policy/', '^src/errors\\.ts$'] },
  },
  {
    name: 'faces-are-entry-points',
    comment: 'Only adapters (through the package name or #internal) and tests reach the entry modules.',
    severity: 'error',
    from: { path: '^src/', pathNot: '^src/(index|internal)\\.ts$' },
    to: { path: '^src/(index|internal)\\.ts$' },
  },
]
layers.forEach((layer, i) => {
  const above = layers.slice(i + 1).flat()
  if (above.length === 0) return
  forbidden.push({
    name: `layer-${i}-imports-upward`,
    severity: 'error',
    from: { path: join(layer) },
    to: { path: join(above) },
  })
})

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['^dist/', '^test/', '^bench/', '^examples/', '^docs/'] },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    combinedDependencies: false,
    enhancedResolveOptions: { conditionNames: ['agent-trust-source', 'import', 'types', 'default'], exportsFields: ['exports'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
}
