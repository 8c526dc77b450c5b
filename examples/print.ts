/** One line per decision, readable at a glance. */
export type Print = (line: string) => void

export async function attempt(print: Print, label: string, action: () => Promise<unknown>): Promise<boolean> {
  try {
    await action()
    print(`  ALLOWED  ${label}`)
    return true
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'ERR_GENERIC'
    print(`  DENIED   ${label}  [${code}]`)
    return false
  }
}
