import { ConfigError, type InputIssue } from '../../errors.js'
import { type FieldSchema, fieldMessage, unknownField, unknownSection } from './messages.js'
import { fieldNames, fieldSchema, SECTION_NAMES, type SectionName } from './schema.js'
import { fieldJsonSchemas } from './validate.js'

export type ConfigObject = Record<string, Record<string, unknown>>

// `section.field=value` overrides (the CLI's --set, and the research system's `--section.field=value`
// flags on the Python side, python/ttt_video/contracts/overrides.py): the text of a value is read by the
// type of its field, strictly: integers are decimal digits, numbers decimal with an optional exponent,
// booleans true/false, null/none only for fields that may be null. Anything else stays text and is then
// reported with the field's real constraint (`must be an integer from 1 to 1000, got "0x10"`).

const INTEGER = /^[-+]?\d+$/
const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/
const NULLS = ['null', 'none', 'None']

function accepts(schema: FieldSchema, type: string): boolean {
  return schema.type === type || (schema.anyOf ?? []).some((s) => accepts(s, type))
}

/** The value a `--set` text stands for in a field of this JSON Schema. */
export function coerceSetValue(schema: FieldSchema, text: string): unknown {
  if (NULLS.includes(text) && accepts(schema, 'null')) return null
  if ((text === 'true' || text === 'false') && accepts(schema, 'boolean')) return text === 'true'
  if (accepts(schema, 'integer') && INTEGER.test(text)) return Number(text)
  if (accepts(schema, 'number') && NUMBER.test(text)) return Number(text)
  return text
}

/** Where a `section.field` name is wrong, or undefined when it exists. */
export function locateField(section: string, field?: string): string | undefined {
  if (!(SECTION_NAMES as string[]).includes(section)) return unknownSection(section, SECTION_NAMES)
  if (field === undefined) return undefined
  const fields = fieldNames(section as SectionName)
  return fields.includes(field) ? undefined : unknownField(section, field, fields)
}

/** One `section.field=value` text -> [section, field, value], or the issue that stops it. */
export function parseSetArg(arg: string): [string, string, unknown] | InputIssue {
  const eq = arg.indexOf('=')
  const key = eq < 0 ? arg : arg.slice(0, eq)
  const parts = key.split('.')
  if (eq < 0 || parts.length !== 2 || !parts[0] || !parts[1])
    return { path: key, message: 'must look like section.field=value (e.g. model.ssm_layer=ttt_linear)' }
  const [section, field] = parts as [string, string]
  const location = locateField(section, field)
  if (location) return { path: key, message: location }
  const schema = fieldJsonSchemas()[section]![field]!
  const value = coerceSetValue(schema, arg.slice(eq + 1))
  if (!fieldSchema(section as SectionName, field).safeParse(value).success)
    return { path: key, message: fieldMessage(schema, value) }
  return [section, field, value]
}

/** `section.field=value` texts -> a partial config; every bad one is reported at once. */
export function parseSetArgs(args: readonly string[]): ConfigObject {
  const out: ConfigObject = {}
  const issues: InputIssue[] = []
  for (const arg of args) {
    const parsed = parseSetArg(arg)
    if (!Array.isArray(parsed)) {
      issues.push({ ...parsed, message: `${parsed.message} (in --set ${arg})` })
      continue
    }
    const [section, field, value] = parsed
    out[section] ??= {}
    out[section][field] = value
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return out
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
