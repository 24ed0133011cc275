import { type ConfigObject, mergeConfigObjects } from '../contracts/config/overrides.js'
import type { EvalPreset } from '../contracts/presets.gen.js'
import { validateStoryboards } from '../contracts/storyboard.js'
import {
  ConfigError,
  type InputIssue,
  PythonRuntimeError,
  StoryboardError,
  WeightsNotFoundError,
} from '../errors.js'
import { type GenerateOptions, type PreparedRun, prepareGenerate } from '../runs/generate.js'
import { configPath, requestIssues, storyboardPath } from './issue-paths.js'
import { HttpError, invalid } from './problem.js'
import { JobRequest } from './schemas.js'
import type { JobInput } from './store.js'

// A request is checked in full before it is queued, as generate() checks it, so that a queued job fails
// only for runtime reasons.

/** A bundle value that runs the shipped demo model (models/demo) instead of a bundle folder. */
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

/** A job's input before its seed is resolved (the request may leave it to the config). */
type RequestedInput = Omit<JobInput, 'seed'> & { seed?: number }

export interface ValidationContext {
  bundles: Readonly<Record<string, string>>
  defaultBundle: string
  limits: Limits
  venvDir: string | undefined
  slot: Slot
}

const demoOnly = (bundle: string) =>
  `bundle "${bundle}" is the demo model, which runs only the demo presets (demo/3s, demo/9s, or none) and model.size "demo"`

/**
 * The overrides generate() gets. The demo bundle is the demo model; without a preset (which names its own
 * size) that is said explicitly, since generate() takes a config without a model bundle for one meant
 * for a real model.
 */
function runOverrides(input: RequestedInput, demo: boolean): ConfigObject | undefined {
  if (!demo || input.preset !== undefined) return input.overrides
  return mergeConfigObjects({ model: { size: 'demo' } }, input.overrides)
}

/** The options of generate() for a job (the run directory and the signal are added when it runs). */
export function generateOptions(
  input: RequestedInput,
  bundlePath: string,
  slot: Slot,
  venvDir: string | undefined,
): GenerateOptions {
  const overrides = runOverrides(input, bundlePath === DEMO_BUNDLE)
  return {
    ...(bundlePath === DEMO_BUNDLE ? {} : { model: bundlePath }),
    ...(input.preset !== undefined ? { preset: input.preset as EvalPreset } : {}),
    ...(overrides !== undefined ? { overrides } : {}),
    ...(input.seed !== undefined ? { seed: input.seed } : {}),
    ...(slot.gpus !== undefined ? { gpus: slot.gpus } : {}),
    ...(venvDir !== undefined ? { venvDir } : {}),
    env: slot.env,
  }
}

/** The request's schema (zod): a 422 naming every bad field, else the body as sent. */
function parseRequest(body: unknown): JobRequest {
  const parsed = JobRequest.safeParse(body)
  if (!parsed.success) throw invalid(requestIssues(parsed.error.issues))
  // The body as sent: zod's output fills config defaults in, which would override the preset.
  return body as JobRequest
}

/** The server's own limits (videos a job, prompt length) and the bundle name. */
function serverIssues(request: JobRequest, ctx: ValidationContext): InputIssue[] {
  const issues: InputIssue[] = []
  const { maxVideos, maxTextChars } = ctx.limits
  if (request.storyboards.length > maxVideos)
    issues.push({
      path: 'storyboards',
      message: `holds ${request.storyboards.length} videos; this server takes at most ${maxVideos} a job`,
    })
  request.storyboards.forEach((video, v) => {
    video.forEach((segment, s) => {
      for (const key of ['text', 'neg_text'] as const) {
        const text = segment[key]
        if (typeof text === 'string' && text.length > maxTextChars)
          issues.push({
            path: `storyboards[${v}][${s}].${key}`,
            message: `is ${text.length} characters long; at most ${maxTextChars}`,
          })
      }
    })
  })
  const bundle = request.bundle ?? ctx.defaultBundle
  if (ctx.bundles[bundle] === undefined)
    issues.push({
      path: 'bundle',
      message: `unknown bundle "${bundle}"; this server has ${Object.keys(ctx.bundles).join(', ')}`,
    })
  else if (ctx.bundles[bundle] === DEMO_BUNDLE) {
    const size = (request.overrides as { model?: { size?: unknown } } | undefined)?.model?.size
    if (request.preset !== undefined && !request.preset.startsWith('demo/'))
      issues.push({ path: 'preset', message: demoOnly(bundle) })
    if (size !== undefined && size !== 'demo')
      issues.push({ path: 'overrides.model.size', message: demoOnly(bundle) })
  }
  return issues
}

/** The HTTP error of what prepareGenerate() threw for a request, in request terms. */
function requestError(e: unknown, input: RequestedInput, demo: boolean): unknown {
  if (e instanceof StoryboardError)
    return invalid(
      e.issues.map((i) => ({ ...i, path: storyboardPath(i.path) })),
      e.code,
    )
  if (e instanceof ConfigError)
    return invalid(
      e.issues.map((i) => ({ ...i, path: configPath(i.path, input.overrides) })),
      e.code,
    )
  if (e instanceof WeightsNotFoundError) {
    const issue = demo
      ? {
          path: input.preset !== undefined ? 'preset' : 'overrides.model.size',
          message: demoOnly(input.bundle),
        }
      : {
          path: 'bundle',
          message: `bundle "${input.bundle}" is not usable on this server (its files are missing)`,
        }
    return invalid([issue], e.code)
  }
  if (e instanceof PythonRuntimeError)
    return new HttpError(503, 'runtime-unavailable', 'the Python runtime of the server is not set up', {
      code: e.code,
    })
  return e
}

/**
 * Checks a request body in full, as `generate()` would (schema, limits, storyboards, the resolved
 * config and its cross-field rules, segment counts), without writing anything. Answers the job's input
 * with the seed it will run with (the request's, else the config's job.seed). Throws an HttpError: 422
 * with every bad field's path, or 503 when the runtime is missing.
 */
export async function validateRequest(body: unknown, ctx: ValidationContext): Promise<JobInput> {
  const request = parseRequest(body)
  const issues = serverIssues(request, ctx)
  if (issues.length > 0) throw invalid(issues)
  const bundle = request.bundle ?? ctx.defaultBundle
  const bundlePath = ctx.bundles[bundle]!
  const input: RequestedInput = {
    storyboards: request.storyboards,
    bundle,
    ...(request.preset !== undefined ? { preset: request.preset } : {}),
    ...(request.overrides !== undefined ? { overrides: request.overrides as ConfigObject } : {}),
    ...(request.seed !== undefined ? { seed: request.seed } : {}),
  }
  let prepared: PreparedRun
  try {
    prepared = await prepareGenerate(validateStoryboards(request.storyboards), {
      ...generateOptions(input, bundlePath, ctx.slot, ctx.venvDir),
      dryRun: true,
    })
  } catch (e) {
    throw requestError(e, input, bundlePath === DEMO_BUNDLE)
  }
  return { ...input, seed: prepared.config.job.seed }
}
