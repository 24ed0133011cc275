import type * as z from 'zod'
import type { ConfigObject } from '../contracts/config/index.js'
import { locateField } from '../contracts/config/overrides.js'
import type { InputIssue } from '../errors.js'
import { OVERRIDABLE_SECTIONS, PATH_FIELDS } from './schemas.js'

// Every problem of a request is reported at the path the client wrote: `storyboards[0][1].text`,
// `overrides.eval.image_width`, `preset`, `bundle`. These turn the SDK's own paths into those.

/** `['storyboards', 0, 1, 'text']` -> `storyboards[0][1].text`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out === '' ? String(part) : `.${String(part)}`
  }
  return out
}

/** An SDK storyboard path in request terms: `video[0].segment[1].text` -> `storyboards[0][1].text`. */
export function storyboardPath(path: string): string {
  if (path === '') return 'storyboards'
  return path.replace(/^video\[(\d+)\](?:\.segment\[(\d+)\])?/, (_m, v: string, s?: string) =>
    s === undefined ? `storyboards[${v}]` : `storyboards[${v}][${s}]`,
  )
}

/**
 * A config issue path in request terms: `overrides.<section>.<field>` when the request set that field,
 * else `config.<section>.<field>` (the value came from the preset or the defaults).
 */
export function configPath(path: string, overrides: ConfigObject | undefined): string {
  if (path === '' || path === 'config') return 'overrides'
  if (path === 'preset') return 'preset'
  const [section, field] = path.split('.')
  const set = section !== undefined && field !== undefined && overrides?.[section]?.[field] !== undefined
  return `${set ? 'overrides' : 'config'}.${path}`
}

function unknownKeyMessage(parent: readonly PropertyKey[], key: string): string {
  if (parent.length === 0)
    return `unknown field "${key}"; a job has storyboards, bundle, preset, overrides, seed`
  if (parent[0] !== 'overrides') return `unknown key "${key}"`
  if (parent.length === 1) {
    const known = locateField(key) === undefined
    return known
      ? `section [${key}] cannot be set through the service; these can: ${OVERRIDABLE_SECTIONS.join(', ')}`
      : (locateField(key) ?? `unknown section [${key}]`)
  }
  const section = String(parent[1])
  if ((PATH_FIELDS[section as keyof typeof PATH_FIELDS] ?? []).includes(key))
    return `${section}.${key} names a filesystem path, which a request may not; model bundles are chosen by name`
  return locateField(section, key) ?? `unknown field ${section}.${key}`
}

/** zod's issues of a request body, one per bad field (an unknown key is its own issue). */
export function requestIssues(issues: readonly z.core.$ZodIssue[]): InputIssue[] {
  const out: InputIssue[] = []
  for (const issue of issues) {
    if (issue.code !== 'unrecognized_keys') {
      out.push({ path: formatPath(issue.path), message: issue.message })
      continue
    }
    for (const key of issue.keys) {
      const path = formatPath([...issue.path, key])
      out.push({ path, message: unknownKeyMessage(issue.path, key) })
    }
  }
  return out
}
