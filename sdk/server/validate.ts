import type * as z from 'zod'
import type { ConfigObject } from '../contracts/config/index.js'
import { locateField } from '../contracts/config/overrides.js'
import type { EvalPreset } from '../contracts/presets.gen.js'
import { validateStoryboards } from '../contracts/storyboard.js'
import {
  ConfigError,
  type InputIssue,
  PythonRuntimeError,
  StoryboardError,
  WeightsNotFoundError,
} from '../errors.js'
import { type GenerateOptions, prepareGenerate } from '../runs/generate.js'
import { HttpError, invalid } from './problem.js'
import { JobRequest, OVERRIDABLE_SECTIONS, PATH_FIELDS } from './schemas.js'
import type { JobInput } from './store.js'

/** A bundle value that runs the tiny random-weight demo model instead of a bundle folder. */
export const DEMO_BUNDLE = 'builtin:demo'

export interface Limits {
  /** Videos in one job. */
  maxVideos: number
  /** Characters of one prompt (text or neg_text). */
  maxTextChars: number
}

/** The process layout of one job slot. */
export interface Slot {
  index: number
  /** Processes per job (one per GPU of the set); undefined: one process. */
  gpus: number | undefined
  env: Record<string, string>
}

export interface ValidationContext {
  bundles: Readonly<Record<string, string>>
  defaultBundle: string
  limits: Limits
  venvDir: string | undefined
  slot: Slot
}

/** `['storyboards', 0, 1, 'text']` -> `storyboards[0][1].text`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out === '' ? String(part) : `.${String(part)}`
  }
  return out
}

/** An SDK issue path in request terms: `video[0].segment[1].text` -> `storyboards[0][1].text`. */
function storyboardPath(path: string): string {
  if (path === '') return 'storyboards'
  return path.replace(/^video\[(\d+)\](?:\.segment\[(\d+)\])?/, (_m, v: string, s?: string) =>
    s === undefined ? `storyboards[${v}]` : `storyboards[${v}][${s}]`,
  )
}

/**
 * A config issue path in request terms: `overrides.<section>.<field>` when the request set that field,
 * else `config.<section>.<field>` (the value came from the preset or the defaults).
 */
function configPath(path: string, overrides: ConfigObject | undefined): string {
  if (path === '' || path === 'config') return 'overrides'
  if (path === 'preset') return 'preset'
  const [section, field] = path.split('.')
  const set = section !== undefined && field !== undefined && overrides?.[section]?.[field] !== undefined
  return `${set ? 'overrides' : 'config'}.${path}`
}

function requestIssues(issues: readonly z.core.$ZodIssue[]): InputIssue[] {
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

/** The options of generate() for a job (the run directory and the signal are added when it runs). */
export function generateOptions(
  input: JobInput,
  bundlePath: string,
  slot: Slot,
  venvDir: string | undefined,
): GenerateOptions {
  return {
    ...(bundlePath === DEMO_BUNDLE ? {} : { model: bundlePath }),
    ...(input.preset !== undefined ? { preset: input.preset as EvalPreset } : {}),
    ...(input.overrides !== undefined ? { overrides: input.overrides } : {}),
    ...(input.seed !== undefined ? { seed: input.seed } : {}),
    ...(slot.gpus !== undefined ? { gpus: slot.gpus } : {}),
    ...(venvDir !== undefined ? { venvDir } : {}),
    env: slot.env,
  }
}

/**
 * Checks a request body in full, as `generate()` would (schema, limits, storyboards, the resolved
 * config and its cross-field rules, segment counts), without writing anything. Throws an HttpError
 * (422 with every bad field's path, or 503 when the runtime is missing).
 */
export async function validateRequest(body: unknown, ctx: ValidationContext): Promise<JobInput> {
  const parsed = JobRequest.safeParse(body)
  if (!parsed.success) throw invalid(requestIssues(parsed.error.issues))
  // The body as sent (zod's output fills config defaults in, which would override the preset).
  const request = body as JobRequest

  const issues: InputIssue[] = []
  if (request.storyboards.length > ctx.limits.maxVideos) {
    issues.push({
      path: 'storyboards',
      message: `holds ${request.storyboards.length} videos; this server takes at most ${ctx.limits.maxVideos} a job`,
    })
  }
  request.storyboards.forEach((video, v) => {
    video.forEach((segment, s) => {
      for (const key of ['text', 'neg_text'] as const) {
        const text = segment[key]
        if (typeof text === 'string' && text.length > ctx.limits.maxTextChars) {
          issues.push({
            path: `storyboards[${v}][${s}].${key}`,
            message: `is ${text.length} characters long; at most ${ctx.limits.maxTextChars}`,
          })
        }
      }
    })
  })
  const bundle = request.bundle ?? ctx.defaultBundle
  const bundlePath = ctx.bundles[bundle]
  if (bundlePath === undefined) {
    issues.push({
      path: 'bundle',
      message: `unknown bundle "${bundle}"; this server has ${Object.keys(ctx.bundles).join(', ')}`,
    })
  }
  if (issues.length > 0) throw invalid(issues)

  const input: JobInput = {
    storyboards: request.storyboards,
    bundle,
    ...(request.preset !== undefined ? { preset: request.preset } : {}),
    ...(request.overrides !== undefined ? { overrides: request.overrides as ConfigObject } : {}),
    ...(request.seed !== undefined ? { seed: request.seed } : {}),
  }
  try {
    const videos = validateStoryboards(request.storyboards)
    await prepareGenerate(videos, {
      ...generateOptions(input, bundlePath!, ctx.slot, ctx.venvDir),
      dryRun: true,
    })
  } catch (e) {
    if (e instanceof StoryboardError)
      throw invalid(
        e.issues.map((i) => ({ ...i, path: storyboardPath(i.path) })),
        e.code,
      )
    if (e instanceof ConfigError)
      throw invalid(
        e.issues.map((i) => ({ ...i, path: configPath(i.path, input.overrides) })),
        e.code,
      )
    if (e instanceof WeightsNotFoundError) {
      const demo = bundlePath === DEMO_BUNDLE
      throw invalid(
        [
          demo
            ? {
                path: 'preset',
                message: `bundle "${bundle}" is the tiny demo model, which runs only the tiny presets (or none)`,
              }
            : {
                path: 'bundle',
                message: `bundle "${bundle}" is not usable on this server (its files are missing)`,
              },
        ],
        e.code,
      )
    }
    if (e instanceof PythonRuntimeError)
      throw new HttpError(503, 'runtime-unavailable', 'the Python runtime of the server is not set up', {
        code: e.code,
      })
    throw e
  }
  return input
}
