/**
 * Files that decide trust (manifests, JWKS files, trust-change stores) are read only when
 * nobody but the running user can change them: a regular file (symbolic links refused,
 * O_NOFOLLOW), owned by the running user, not writable by group or others. The checks run on
 * the opened file (fstat), so nothing can be swapped in between, and on every (re)load.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs'
import { open } from 'node:fs/promises'
import { ConfigInvalid } from '../errors.js'

function check(st: Stats, path: string, what: string): void {
  if (!st.isFile()) throw new ConfigInvalid(`the ${what} "${path}" is not a regular file`, { details: { rule: 'not-a-file' } })
  if (process.platform === 'win32') return
  if ((st.mode & 0o022) !== 0)
    throw new ConfigInvalid(
      `the ${what} "${path}" has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: it decides trust and must not be writable by group or others (chmod go-w)`,
      { details: { rule: 'file-mode', mode: (st.mode & 0o777).toString(8) } },
    )
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined
  if (uid !== undefined && st.uid !== uid)
    throw new ConfigInvalid(`the ${what} "${path}" is owned by uid ${st.uid}, not by the running user (uid ${uid}): it decides trust`, {
      details: { rule: 'file-owner' },
    })
}

function refuseLink(e: unknown, path: string, what: string): never {
  if ((e as NodeJS.ErrnoException).code === 'ELOOP')
    throw new ConfigInvalid(`the ${what} "${path}" is a symbolic link; point at the file itself`, { details: { rule: 'symlink' } })
  throw e
}

/** Read a trust-deciding file synchronously after the ownership and mode checks. Errors from `open` (ENOENT, ...) are thrown as they are. */
export function readTrustFileSync(path: string, what: string): string {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0))
  } catch (e) {
    refuseLink(e, path, what)
  }
  try {
    check(fstatSync(fd), path, what)
    return readFileSync(fd, 'utf8')
  } finally {
    closeSync(fd)
  }
}

/** The same, asynchronously. */
export async function readTrustFile(path: string, what: string): Promise<string> {
  const fh = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0)).catch((e: unknown) => refuseLink(e, path, what))
  try {
    check(await fh.stat(), path, what)
    return await fh.readFile('utf8')
  } finally {
    await fh.close()
  }
}
