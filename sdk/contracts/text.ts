import { readFileSync, statSync } from 'node:fs'

/** Decodes bytes as strict UTF-8; the error gives the line and column of the first bad byte. */
export function decodeUtf8(
  bytes: Uint8Array,
): { text: string } | { badByte: number; line: number; column: number } {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    return { text: text.startsWith('\uFEFF') ? text.slice(1) : text }
  } catch {
    // Longest prefix that decodes (incomplete trailing sequences are allowed in stream mode).
    let lo = 0
    let hi = bytes.length
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true })
        lo = mid
      } catch {
        hi = mid - 1
      }
    }
    const offset = lo
    const prefix = new TextDecoder('utf-8').decode(bytes.subarray(0, offset))
    const lines = prefix.split('\n')
    return { badByte: offset, line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 }
  }
}

/** Line and column (1-based) of a character offset in a text. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n')
  return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 }
}

/**
 * The bytes of a user's input file. A folder or an unreadable file throws `fail(message)` (the caller's
 * error, naming the file): `is a folder, not ${kind}` or `cannot read ${name} (${errno code})`.
 */
export function readInputFile(
  file: string,
  kind: string,
  name: string,
  fail: (message: string) => Error,
): Buffer {
  try {
    if (!statSync(file).isDirectory()) return readFileSync(file)
  } catch (e) {
    throw fail(`cannot read ${name} (${(e as NodeJS.ErrnoException).code ?? e})`)
  }
  throw fail(`is a folder, not ${kind}`)
}
