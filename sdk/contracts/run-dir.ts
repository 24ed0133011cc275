import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as z from 'zod'
import { ConfigError, type InputIssue } from '../errors.js'
import { readConfigFile } from './config/load.js'
import { formatValue } from './config/messages.js'
import type { JobConfig } from './config/schema.js'
import { validateConfig } from './config/validate.js'
import { parseStoryboards, type Video } from './storyboard.js'

// Contract 2: a run directory. Every name in it, and every field of a video's meta.json, is defined
// here once (and generated into python/ttt_video/contracts/generated.py for the Python side).
//
//   <run>/config.toml  storyboards.jsonl  events.jsonl
//   <run>/video-<k>/video.mp4  prompt.txt  meta.json          (sampling)
//   <run>/checkpoints/step-<N>/  loss.svg                     (training)

export const RUN_FILES = {
  config: 'config.toml',
  storyboards: 'storyboards.jsonl',
  events: 'events.jsonl',
  checkpoints: 'checkpoints',
  lossCurve: 'loss.svg',
} as const

export const VIDEO_FILES = { video: 'video.mp4', prompts: 'prompt.txt', meta: 'meta.json' } as const
export const VIDEO_DIR_PREFIX = 'video-'

/** Fields that do not change what a sampling run produces: a resumed run may change them. */
export const RESUME_FREE_FIELDS = [
  'job.config_file',
  'eval.output_dir',
  'eval.input_file',
  'eval.cfg_batch',
  'eval.cuda_graphs',
  'model.ttt_kernel',
  // the layout, not parallelism.fsdp_unsharded_dtype: that is the DiT's compute dtype (and decides 'auto')
  'parallelism.tp_sharding',
  'parallelism.dp_sharding',
  'parallelism.dp_replicate',
  'parallelism.cfg_parallel',
  'comm.*',
  'wandb.*',
  'remat.*',
  'training.*',
  'optimizer.*',
  'checkpoint.interval',
  'checkpoint.resume',
  'checkpoint.resume_step',
  'checkpoint.timeout_minutes',
] as const

export const videoDir = (runDir: string, index: number) => join(runDir, `${VIDEO_DIR_PREFIX}${index}`)
export const videoFile = (runDir: string, index: number) => join(videoDir(runDir, index), VIDEO_FILES.video)

const seconds = z.number().nonnegative()

/** meta.json of a finished video (written last: a video folder with it is complete). */
export const VideoMeta = z.object({
  video: z.int().min(0),
  seed: z.int(),
  frames: z.int().min(1),
  fps: z.number().positive(),
  seconds,
  segments: z.int().min(1),
  width: z.int().min(1),
  height: z.int().min(1),
  prompts: z.array(z.string()),
  negative_prompts: z.array(z.string()),
  sampler: z.string(),
  steps: z.int().min(1),
  guidance_schedule: z.string(),
  latent_scale: z.number().positive(),
  model: z.object({
    ssm_layer: z.string(),
    model_dim: z.int(),
    num_layers: z.int(),
    bundle: z.string().nullable(),
    fingerprint: z.string(),
    bundle_latent_scale: z.number().nullable(),
    bundle_source: z.string().nullable(),
  }),
  device: z.string(),
  /** What the video was made from, compared before a re-run skips it. */
  identity: z.object({
    storyboard: z.string(),
    model: z.string(),
    config: z.record(z.string(), z.unknown()),
  }),
  timings: z.object({
    total_seconds: seconds,
    text_seconds: seconds,
    sampling_seconds: seconds,
    seconds_per_step: z.array(seconds),
    decode_seconds: seconds,
    seconds_per_window: z.array(seconds),
  }),
})
export type VideoMeta = z.infer<typeof VideoMeta>

/** A finished video's meta.json, or undefined when the video is not complete. */
export function readVideoMeta(runDir: string, index: number): VideoMeta | undefined {
  const file = join(videoDir(runDir, index), VIDEO_FILES.meta)
  if (!existsSync(file) || !existsSync(videoFile(runDir, index))) return undefined
  return VideoMeta.parse(JSON.parse(readFileSync(file, 'utf8')))
}

const isFree = (path: string) =>
  RESUME_FREE_FIELDS.some((f) => f === path || (f.endsWith('.*') && path.startsWith(f.slice(0, -1))))

/** `section.field: before -> after` of every field that differs and matters for the outputs. */
export function configDifferences(before: JobConfig, after: JobConfig): string[] {
  const out: string[] = []
  for (const [section, values] of Object.entries(after) as [string, Record<string, unknown>][]) {
    for (const [field, value] of Object.entries(values)) {
      const old = (before as unknown as Record<string, Record<string, unknown>>)[section]?.[field]
      const path = `${section}.${field}`
      if (!isFree(path) && JSON.stringify(old) !== JSON.stringify(value))
        out.push(`${path} is ${formatValue(old)} there and ${formatValue(value)} now`)
    }
  }
  return out
}

/**
 * An existing run directory may be resumed only by the run it holds: the same storyboards, and a config
 * that differs at most in RESUME_FREE_FIELDS. Throws a ConfigError naming what differs.
 */
export function checkResumable(runDir: string, config: JobConfig, videos: readonly Video[]): void {
  const configFile = join(runDir, RUN_FILES.config)
  const storyboardsFile = join(runDir, RUN_FILES.storyboards)
  if (!existsSync(configFile) && !existsSync(storyboardsFile)) return
  const problems: string[] = []
  if (existsSync(configFile))
    problems.push(...configDifferences(validateConfig(readConfigFile(configFile)), config))
  if (existsSync(storyboardsFile)) {
    const held = parseStoryboards(readFileSync(storyboardsFile), 'jsonl', storyboardsFile)
    const differ = videos
      .map((v, i) => (JSON.stringify(v) === JSON.stringify(held[i]) ? -1 : i))
      .filter((i) => i >= 0)
    if (held.length !== videos.length)
      problems.push(`it holds ${held.length} videos, this run has ${videos.length}`)
    else if (differ.length > 0) problems.push(`the storyboards of video ${differ.join(', ')} differ`)
  }
  if (problems.length === 0) return
  const issue: InputIssue = {
    path: 'runDir',
    message: `${runDir} holds another run (${problems.join('; ')}); pass a new run directory (or none), or delete this one`,
  }
  throw new ConfigError([issue])
}
