import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** Where the server's token came from. */
export type TokenSource = 'option' | 'env' | 'file' | 'generated'

export const TOKEN_ENV = 'TTT_VIDEO_TOKEN'
const TOKEN_FILE = 'token'
const MIN_TOKEN_LENGTH = 16

/** A new random token (256 bits, base64url). */
export function newToken(): string {
  return randomBytes(32).toString('base64url')
}

/**
 * The token: the option, else $TTT_VIDEO_TOKEN, else the one generated on an earlier start
 * (`<jobsDir>/token`), else a new one (`source: 'generated'`), which nothing has written yet: the server
 * writes it with `saveToken` once it listens, so a server that fails to start leaves no token behind.
 */
export function resolveToken(
  jobsDir: string,
  option?: string,
  env: NodeJS.ProcessEnv = process.env,
): { token: string; source: TokenSource } {
  const given = option ?? env[TOKEN_ENV]
  if (given !== undefined && given !== '') {
    if (given.length < MIN_TOKEN_LENGTH || /\s/.test(given))
      throw new RangeError(`the token must be at least ${MIN_TOKEN_LENGTH} characters without spaces`)
    return { token: given, source: option !== undefined ? 'option' : 'env' }
  }
  const file = tokenFile(jobsDir)
  if (existsSync(file)) {
    const stored = readFileSync(file, 'utf8').trim()
    if (stored.length >= MIN_TOKEN_LENGTH) return { token: stored, source: 'file' }
  }
  return { token: newToken(), source: 'generated' }
}

/** Where a generated token is kept. */
export const tokenFile = (jobsDir: string) => join(jobsDir, TOKEN_FILE)

/** Keeps a generated token for the next start (mode 0600). */
export function saveToken(jobsDir: string, token: string): void {
  mkdirSync(jobsDir, { recursive: true })
  writeFileSync(tokenFile(jobsDir), `${token}\n`, { mode: 0o600 })
  chmodSync(tokenFile(jobsDir), 0o600)
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest()

/** Compares in constant time: equal-length SHA-256 digests, so neither content nor length leaks. */
export function tokensEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected))
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '')
  return m?.[1]
}
