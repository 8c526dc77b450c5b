/** Rewrites the README error table from the error catalogue (npm run docs:errors). */
import { readFileSync, writeFileSync } from 'node:fs'
import { ERROR_CATALOG, type CatalogEntry } from '../src/errors.js'
const rows = Object.entries(ERROR_CATALOG).map(
  ([code, e]: [string, CatalogEntry]) => `| \`${code}\` | \`${e.name}\` | ${e.status} | ${e.when} | ${e.fix} |`,
)
const table = ['| Code | Class | HTTP | When | How to fix |', '|---|---|---|---|---|', ...rows].join('\n')
const readme = readFileSync('README.md', 'utf8')
const start = readme.indexOf('| Code | Class |')
let end = readme.indexOf('\n\n', start)
if (end < 0) end = readme.length
writeFileSync('README.md', readme.slice(0, start) + table + readme.slice(end))
