import { ConfigError, type InputIssue } from '../errors.js'
import { closest } from '../text.js'
import { fieldNames, JobConfigSchema, SECTION_NAMES, type SectionName } from './schema.js'

export type ConfigObject = Record<string, Record<string, unknown>>

/**
 * Turns `section.field=value` strings into a partial config. Values are coerced by the field's type in
 * the schema: numbers, booleans, `null` for optional fields, everything else stays a string.
 */
export function parseSetArgs(args: readonly string[]): ConfigObject {
  const out: ConfigObject = {}
  const issues: InputIssue[] = []
  for (const arg of args) {
    const eq = arg.indexOf('=')
    const key = eq < 0 ? arg : arg.slice(0, eq)
    const parts = key.split('.')
    if (eq < 0 || parts.length !== 2 || !parts[0] || !parts[1]) {
      issues.push({
        path: key,
        message: `--set ${arg}: must look like section.field=value (e.g. model.ssm_layer=ttt_linear)`,
      })
      continue
    }
    const [section, field] = parts as [string, string]
    const location = locateField(section, field)
    if (location) {
      issues.push({ path: key, message: `${location} (in --set ${arg})` })
      continue
    }
    const value = coerce(section as SectionName, field, arg.slice(eq + 1))
    const problem = fieldSchema(section as SectionName, field).safeParse(value)
    if (!problem.success) {
      issues.push({
        path: key,
        message: `${problem.error.issues[0]?.message ?? 'invalid value'} (in --set ${arg})`,
      })
      continue
    }
    out[section] ??= {}
    out[section][field] = value
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return out
}

/** An "unknown section/field" message with a suggestion, or undefined when the field exists. */
export function locateField(section: string, field?: string): string | undefined {
  if (!(SECTION_NAMES as string[]).includes(section)) {
    const guess = closest(section, SECTION_NAMES)
    return `unknown section [${section}]${guess ? `; did you mean [${guess}]?` : `; valid sections: ${SECTION_NAMES.join(', ')}`}`
  }
  if (field === undefined) return undefined
  const fields = fieldNames(section as SectionName)
  if (fields.includes(field)) return undefined
  const guess = closest(field, fields)
  return `unknown field ${section}.${field}${guess ? `; did you mean ${section}.${guess}?` : `; valid fields of [${section}]: ${fields.join(', ')}`}`
}

type FieldSchema = {
  safeParse(v: unknown): { success: true } | { success: false; error: { issues: { message: string }[] } }
}

function fieldSchema(section: SectionName, field: string): FieldSchema {
  return JobConfigSchema.shape[section].unwrap().shape[field as never] as unknown as FieldSchema
}

function coerce(section: SectionName, field: string, raw: string): unknown {
  const schema = fieldSchema(section, field)
  const candidates: unknown[] = []
  if (raw === 'null' || raw === 'none' || raw === 'None') candidates.push(null)
  if (raw === 'true' || raw === 'false') candidates.push(raw === 'true')
  if (raw.trim() !== '' && Number.isFinite(Number(raw))) candidates.push(Number(raw))
  for (const c of candidates) if (schema.safeParse(c).success) return c
  return raw
}

/** Deep merge of plain objects; later sources win, arrays and scalars are replaced. */
export function mergeConfigObjects(...sources: (ConfigObject | undefined)[]): ConfigObject {
  const out: ConfigObject = {}
  for (const src of sources) {
    if (!src) continue
    for (const [section, fields] of Object.entries(src)) {
      if (fields !== null && typeof fields === 'object' && !Array.isArray(fields)) {
        out[section] = { ...(out[section] ?? {}), ...fields }
      } else {
        out[section] = fields as never
      }
    }
  }
  return out
}
