import { existsSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { ConfigError, type InputIssue } from '../../errors.js'
import type { RunKind } from '../events.js'
import { type Expr, evaluate, type Scope, type Value } from './expr.js'
import { RULE_TABLES } from './facts.js'
import { type FieldSchema, fieldMessage, unknownField, unknownSection } from './messages.js'
import { DERIVED, PATH_FIELDS, RULES, type Rule } from './rules.js'
import {
  fieldNames,
  fieldSchema,
  type JobConfig,
  JobConfigSchema,
  jobConfigJsonSchema,
  SECTION_NAMES,
  type SectionName,
} from './schema.js'

// Validation of a config, the same on both sides (python/ttt_video/contracts/config.py): first every
// section and field on its own (one issue per field, in the order of the input), then the cross-field
// rules of rules.ts. Messages come from the JSON Schema of each field (messages.ts).

export interface RuleOptions {
  /** Processes of the run; the mesh rule is checked only when it is known. */
  worldSize?: number
  /** The kind of run the config is for; some rules apply to one kind (the mesh rule skips 'prepare'). */
  runKind?: RunKind
  /** Check that every path the config names exists (relative paths against `baseDir`). */
  checkPaths?: boolean
  baseDir?: string
}

let fieldSchemaCache: Record<string, Record<string, FieldSchema>> | undefined

/** The JSON Schema of every field, by section (from jobConfigJsonSchema). */
export function fieldJsonSchemas(): Record<string, Record<string, FieldSchema>> {
  if (fieldSchemaCache === undefined) {
    const root = jobConfigJsonSchema() as { $defs: { JobConfig: { properties: Record<string, unknown> } } }
    fieldSchemaCache = Object.fromEntries(
      Object.entries(root.$defs.JobConfig.properties).map(([section, s]) => [
        section,
        (s as { properties: Record<string, FieldSchema> }).properties,
      ]),
    )
  }
  return fieldSchemaCache
}

const isTable = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v)

/** Problems of the sections and fields taken one by one (unknown names, wrong types, out of range). */
export function schemaIssues(raw: unknown): InputIssue[] {
  if (!isTable(raw)) return [{ path: '', message: 'the config must be a TOML document of [section] tables' }]
  const issues: InputIssue[] = []
  for (const [section, values] of Object.entries(raw)) {
    if (!(SECTION_NAMES as string[]).includes(section)) {
      issues.push({ path: section, message: unknownSection(section, SECTION_NAMES) })
    } else if (!isTable(values)) {
      issues.push({ path: section, message: `must be a table [${section}], not a single value` })
    } else {
      issues.push(...sectionIssues(section as SectionName, values))
    }
  }
  return issues
}

function sectionIssues(section: SectionName, values: Record<string, unknown>): InputIssue[] {
  const names = fieldNames(section)
  const issues: InputIssue[] = []
  for (const [field, value] of Object.entries(values)) {
    const path = `${section}.${field}`
    if (!names.includes(field)) issues.push({ path, message: unknownField(section, field, names) })
    else if (!fieldSchema(section, field).safeParse(value).success)
      issues.push({ path, message: fieldMessage(fieldJsonSchemas()[section]![field]!, value) })
  }
  return issues
}

/** The scope the rules are evaluated in: fields, derived values, and the run's facts. */
export function ruleScope(config: JobConfig, options: RuleOptions = {}): Scope {
  const run: Record<string, Value> = {
    $world_size: options.worldSize ?? null,
    $run_kind: options.runKind ?? null,
  }
  const scope: Scope = {
    tables: RULE_TABLES,
    lookup: (name) => {
      if (name in run) return run[name]
      if (name.startsWith('@')) {
        const expr = DERIVED[name.slice(1)]
        return expr === undefined ? undefined : evaluate(expr, scope)
      }
      const [section, field] = name.split('.')
      const values = (config as unknown as Record<string, Record<string, Value>>)[section ?? '']
      return values && field !== undefined && field in values ? values[field] : undefined
    },
  }
  return scope
}

function bindAll(scope: Scope, names: readonly (readonly [string, Expr])[] | undefined): Scope {
  let bound = scope
  for (const [name, expr] of names ?? []) {
    const value = evaluate(expr, bound)
    const outer = bound
    bound = { tables: scope.tables, lookup: (n) => (n === name ? value : outer.lookup(n)) }
  }
  return bound
}

function checkRule(rule: Rule, scope: Scope): InputIssue | undefined {
  if (rule.when !== undefined && evaluate(rule.when, scope) !== true) return undefined
  const bound = bindAll(scope, rule.let)
  if (evaluate(rule.require, bound) === true) return undefined
  return { path: rule.path, message: String(evaluate(rule.message, bindAll(bound, rule.hints))) }
}

/** Issues of the cross-field rules (and, with `checkPaths`, of paths that do not exist). */
export function checkRules(config: JobConfig, options: RuleOptions = {}): InputIssue[] {
  const scope = ruleScope(config, options)
  const issues = RULES.map((rule) => checkRule(rule, scope)).filter((i) => i !== undefined)
  return options.checkPaths ? [...issues, ...missingPaths(config, options)] : issues
}

function missingPaths(config: JobConfig, options: RuleOptions): InputIssue[] {
  const issues: InputIssue[] = []
  const baseDir = options.baseDir ?? process.cwd()
  for (const { path, output_of } of PATH_FIELDS) {
    if (output_of !== undefined && output_of === options.runKind) continue
    const [section, field] = path.split('.') as [SectionName, string]
    const value = (config[section] as Record<string, unknown>)[field]
    if (typeof value !== 'string') continue
    const full = isAbsolute(value) ? value : resolve(baseDir, value)
    if (!existsSync(full)) issues.push({ path, message: `path does not exist: ${full}` })
  }
  return issues
}

/** Validates a raw config object (fields, then rules); throws ConfigError with every issue. */
export function validateConfig(raw: unknown, options: RuleOptions & { file?: string } = {}): JobConfig {
  const issues = schemaIssues(raw)
  if (issues.length > 0) throw new ConfigError(issues, options.file)
  const config = JobConfigSchema.parse(raw)
  const ruleIssues = checkRules(config, options)
  if (ruleIssues.length > 0) throw new ConfigError(ruleIssues, options.file)
  return config
}

const derived = (config: JobConfig, name: string) => evaluate(DERIVED[name]!, ruleScope(config))

/** Number of 3-second segments n of a config, or undefined when T is not 12n + 1. */
export function segmentCount(config: JobConfig): number | undefined {
  const n = derived(config, 'segments')
  return typeof n === 'number' ? n : undefined
}

/** Video tokens per latent frame: (height / 16) * (width / 16). */
export function tokensPerFrame(config: JobConfig): number {
  return derived(config, 'tokens_per_frame') as number
}

/** Processes the parallel layout needs: dp_replicate x dp_sharding x tp_sharding x cfg_parallel. */
export function meshSize(config: JobConfig): number {
  return derived(config, 'mesh_size') as number
}
