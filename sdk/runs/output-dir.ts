import { mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { dirname, parse, resolve } from 'node:path'
import { ConfigError } from '../errors.js'

const HOW: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'a file of that name exists',
  ENOENT: 'the file system does not allow creating it',
  ENOSPC: 'no space left on the device',
}

/**
 * Creates `dir` and its missing parents one level at a time (Node's recursive mkdir spins forever on
 * some virtual file systems such as /proc). Errors name the option, the path, the cause and the fix.
 */
export function makeDirectory(dir: string, option: string): string {
  const full = resolve(dir)
  const missing: string[] = []
  let current = full
  while (!exists(current)) {
    missing.unshift(current)
    if (current === parse(current).root) break
    current = dirname(current)
  }
  if (exists(current) && !statSync(current).isDirectory()) fail(option, full, current, 'ENOTDIR')
  for (const path of missing) {
    try {
      mkdirSync(path)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO'
      if (code !== 'EEXIST' || !statSync(path).isDirectory()) fail(option, full, path, code)
    }
  }
  return full
}

function exists(path: string): boolean {
  try {
    statSync(path)
    return true
  } catch {
    return false
  }
}

function fail(option: string, full: string, at: string, code: string): never {
  const cause = HOW[code] ?? code
  throw new ConfigError([
    {
      path: option,
      message: `cannot create ${full}: ${cause} at ${at} (${code}); choose a folder you can write to, or fix the permissions of ${at}`,
    },
  ])
}

/** Writes a file under a temporary name and renames it, so that a reader never sees half of it. */
export function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(tmp, text)
  renameSync(tmp, file)
}
