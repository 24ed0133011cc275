/** A JSON-able value as a Python literal, one item per line inside containers (for generated code). */
export function pythonLiteral(value: unknown, indent: number): string {
  if (value === null || value === undefined) return 'None'
  if (typeof value === 'boolean') return value ? 'True' : 'False'
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot write ${value} as a Python literal`)
    return String(value)
  }
  if (typeof value === 'string') return JSON.stringify(value)
  const pad = ' '.repeat(indent + 4)
  const end = ' '.repeat(indent)
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]'
    const flat = `[${value.map((v) => pythonLiteral(v, 0)).join(', ')}]`
    if (flat.length <= 80 && !flat.includes('\n')) return flat
    return `[\n${value.map((v) => `${pad}${pythonLiteral(v, indent + 4)},`).join('\n')}\n${end}]`
  }
  const entries = Object.entries(value as Record<string, unknown>)
  if (entries.length === 0) return '{}'
  const items = entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${pythonLiteral(v, indent + 4)},`)
  return `{\n${items.join('\n')}\n${end}}`
}
