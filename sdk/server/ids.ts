import { randomBytes } from 'node:crypto'
import { JOB_ID_PATTERN } from './schemas.js'

/** `yyyymmdd-hhmmss-<8 hex>` (UTC): sorts by submission time, safe as a folder name. */
export function newJobId(now = new Date()): string {
  const stamp = now.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-')
  return `${stamp}-${randomBytes(4).toString('hex')}`
}

/** Strict: nothing else ever reaches the filesystem as a job id (no `..`, no separators). */
export function isJobId(value: string): boolean {
  return JOB_ID_PATTERN.test(value)
}
