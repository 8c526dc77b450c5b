/**
 * `npm run bench`: every hot path against its floor, in one run. Medians and ratios only;
 * absolute times on a shared 2-core machine mean little.
 */
import { benchKernel } from './kernel.js'
import { printRows, type Row } from './lib.js'

const sections: Array<[string, () => Promise<Row[]>]> = [['Kernel (issue 2)', benchKernel]]

const only = process.argv[2]
let missed = 0
for (const [title, run] of sections) {
  if (only !== undefined && !title.toLowerCase().includes(only.toLowerCase())) continue
  const rows = await run()
  printRows(title, rows)
  missed += rows.filter((r) => r.pass === false).length
}
console.log(missed === 0 ? '\nall targets met' : `\n${missed} target(s) missed`)
process.exit(0)
