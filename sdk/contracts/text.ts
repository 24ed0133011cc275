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

/** The closest candidate by edit distance, if it is close enough to be a plausible typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase())
    if (d < bestDistance) {
      best = c
      bestDistance = d
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined
}

/** Edit distance with adjacent transpositions (optimal string alignment); same as python/ttt_video/config.py. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i * j === 0 ? i + j : 0)),
  )
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!
      row[j] = Math.min(
        d[i - 1]![j]! + 1,
        row[j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      )
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1)
      }
    }
  }
  return d[a.length]![b.length]!
}
