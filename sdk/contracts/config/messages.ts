// How config problems are worded, derived from the JSON Schema of each field, so that TypeScript and
// Python (python/ttt_video/contracts/messages.py) give the same message for the same input. The two are
// differential-tested (test/unit/config-differential.test.ts).

/** The JSON Schema of one field, as z.toJSONSchema writes it (input side). */
export interface FieldSchema {
  type?: string
  enum?: readonly unknown[]
  const?: unknown
  anyOf?: readonly FieldSchema[]
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  minLength?: number
}

const SAFE = 9007199254740991 // zod's implicit bounds of z.int(); not a constraint users need to read

/** "an integer from 1 to 1000", "one of "linear", "cosine"", "true or false", ... */
export function describeField(s: FieldSchema): string {
  if (s.anyOf) return s.anyOf.map(describeField).join(' or ')
  if (s.const !== undefined) return JSON.stringify(s.const)
  if (s.enum) return `one of ${s.enum.map((v) => JSON.stringify(v)).join(', ')}`
  switch (s.type) {
    case 'null':
      return 'null'
    case 'boolean':
      return 'true or false'
    case 'string':
      return (s.minLength ?? 0) > 0 ? 'a non-empty string' : 'a string'
    case 'integer':
      return `an integer${bounds(s)}`
    case 'number':
      return `a number${bounds(s)}`
    default:
      return 'a value of another type'
  }
}

function bounds(s: FieldSchema): string {
  const lo = s.minimum !== undefined && s.minimum > -SAFE ? s.minimum : undefined
  const hi = s.maximum !== undefined && s.maximum < SAFE ? s.maximum : undefined
  if (lo !== undefined && hi !== undefined) return ` from ${formatNumber(lo)} to ${formatNumber(hi)}`
  const parts: string[] = []
  if (lo !== undefined) parts.push(`>= ${formatNumber(lo)}`)
  if (s.exclusiveMinimum !== undefined) parts.push(`> ${formatNumber(s.exclusiveMinimum)}`)
  if (hi !== undefined) parts.push(`<= ${formatNumber(hi)}`)
  if (s.exclusiveMaximum !== undefined) parts.push(`< ${formatNumber(s.exclusiveMaximum)}`)
  return parts.length > 0 ? ` ${parts.join(' and ')}` : ''
}

/** A number as JavaScript's String() writes it (Python mirrors this exactly). */
export function formatNumber(n: number): string {
  return String(n)
}

/** A value a user gave, for "got ..." in messages. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return 'null'
  if (typeof value === 'boolean') return String(value)
  if (typeof value === 'number') return formatNumber(value)
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)
  if (Array.isArray(value)) return 'an array'
  return 'a table'
}

/** The message of a value that does not fit its field. */
export function fieldMessage(schema: FieldSchema, value: unknown): string {
  return `must be ${describeField(schema)}, got ${formatValue(value)}`
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

/** Edit distance with adjacent transpositions (optimal string alignment). */
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

/** "unknown section [x]; did you mean [y]?" or the list of valid names. */
export function unknownSection(section: string, sections: readonly string[]): string {
  const guess = closest(section, sections)
  return `unknown section [${section}]${guess ? `; did you mean [${guess}]?` : `; valid sections: ${sections.join(', ')}`}`
}

/** "unknown field s.x; did you mean s.y?" or the list of the section's fields. */
export function unknownField(section: string, field: string, fields: readonly string[]): string {
  const guess = closest(field, fields)
  return `unknown field ${section}.${field}${guess ? `; did you mean ${section}.${guess}?` : `; valid fields of [${section}]: ${fields.join(', ')}`}`
}
