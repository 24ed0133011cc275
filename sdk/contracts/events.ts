import * as z from 'zod'

// Contract 3: the events of a run. One JSON object per line of the run directory's events.jsonl, written
// by Python (python/ttt_video/contracts/events.py validates each one against the JSON Schema generated
// from this file) and validated here again by the launcher that follows the file.

export const EVENT_SCHEMA_VERSION = 2

export const RUN_KINDS = ['sample', 'train', 'prepare', 'convert'] as const
export type RunKind = (typeof RUN_KINDS)[number]

export const ERROR_CODES = [
  'CONFIG',
  'STORYBOARD',
  'DATA',
  'WEIGHTS_MISSING',
  'WEIGHTS',
  'OUT_OF_MEMORY',
  'NON_FINITE',
  'DISTRIBUTED',
  'CANCELLED',
  'INTERNAL',
] as const
export type ErrorCode = (typeof ERROR_CODES)[number]

const base = {
  v: z.literal(EVENT_SCHEMA_VERSION),
  /** Unix time in seconds. */
  time: z.number(),
  rank: z.int().min(0),
}
const seconds = z.number().nonnegative()
const count = z.int().min(0)
const video = z.int().min(0).describe('index of the video in the storyboard file')

/** One problem of an input, as the validators report it (a field path or a place in a file). */
export const IssueSchema = z.object({
  path: z.string(),
  message: z.string(),
  line: z.int().min(1).optional(),
  column: z.int().min(1).optional(),
  file: z.string().optional(),
})

/** What a finished video is: enough to list it without reading its meta.json. */
export const VideoFacts = z.object({ video, frames: z.int().min(1), fps: z.number().positive(), seconds })

const lifecycle = [
  z.object({
    ...base,
    type: z.literal('run.started'),
    kind: z.enum(RUN_KINDS),
    run_dir: z.string(),
    world_size: z.int().min(1),
    device: z.string(),
    /** Work items of the run: videos (sample), clips (prepare), optimiser steps (train), tensors (convert). */
    total: count,
  }),
  z.object({ ...base, type: z.literal('model.loading'), component: z.string() }),
  z.object({ ...base, type: z.literal('model.loaded'), component: z.string(), seconds }),
  z.object({ ...base, type: z.literal('warning'), message: z.string(), path: z.string().optional() }),
  z.object({ ...base, type: z.literal('run.finished'), seconds }),
  z.object({
    ...base,
    type: z.literal('error'),
    code: z.enum(ERROR_CODES),
    message: z.string(),
    hint: z.string().optional(),
    traceback: z.string().optional(),
    issues: z.array(IssueSchema).optional(),
  }),
] as const

const sampling = [
  z.object({ ...base, type: z.literal('video.started'), video, segments: z.int().min(1), frames: count }),
  z.object({ ...base, ...VideoFacts.shape, type: z.literal('video.skipped'), reason: z.string() }),
  z.object({
    ...base,
    type: z.literal('step'),
    video,
    index: count,
    total: z.int().min(1),
    elapsed: seconds,
    eta: seconds.nullable(),
  }),
  z.object({
    ...base,
    type: z.literal('decode.window'),
    video,
    index: count,
    total: z.int().min(1),
    frames: count,
    elapsed: seconds,
  }),
  z.object({ ...base, ...VideoFacts.shape, type: z.literal('video.written'), path: z.string() }),
  z.object({ ...base, type: z.literal('video.finished'), video, seconds }),
] as const

const training = [
  z.object({
    ...base,
    type: z.literal('stage.started'),
    stage: z.string(),
    index: count,
    stages: z.int().min(1),
  }),
  z.object({
    ...base,
    type: z.literal('stage.finished'),
    stage: z.string(),
    seconds,
    checkpoint: z.string(),
  }),
  z.object({ ...base, type: z.literal('train.resumed'), step: count, checkpoint: z.string() }),
  z.object({
    ...base,
    type: z.literal('train.step'),
    step: z.int().min(1),
    steps: z.int().min(1),
    loss: z.number().nullable(),
    lr: z.record(z.string(), z.number()),
    grad_norm: z.number().nullable(),
    tokens_per_second: z.number().nonnegative(),
    seconds_per_step: seconds,
    elapsed: seconds,
    eta: seconds.nullable(),
  }),
  z.object({
    ...base,
    type: z.literal('checkpoint.written'),
    step: count,
    path: z.string(),
    seconds,
    final: z.boolean(),
  }),
] as const

const dataAndWeights = [
  z.object({
    ...base,
    type: z.literal('prepare.clip'),
    clip: count,
    total: z.int().min(1),
    path: z.string(),
    status: z.enum(['encoded', 'skipped']),
    seconds,
  }),
  z.object({ ...base, type: z.literal('convert.progress'), done: count, total: z.int().min(1) }),
  z.object({ ...base, type: z.literal('convert.shard'), file: z.string(), bytes: count }),
] as const

export const RunEvent = z.discriminatedUnion('type', [
  ...lifecycle,
  ...sampling,
  ...training,
  ...dataAndWeights,
])
export type RunEvent = z.infer<typeof RunEvent>
export type RunEventType = RunEvent['type']
export type EventOf<T extends RunEventType> = Extract<RunEvent, { type: T }>
export type Issue = z.infer<typeof IssueSchema>

/** The JSON Schema of each event type (for Python, which validates every event it writes). */
export function eventJsonSchemas(): Record<string, unknown> {
  return Object.fromEntries(
    RunEvent.options.map((option) => [
      option.shape.type.value,
      z.toJSONSchema(option, { target: 'draft-2020-12', io: 'output' }),
    ]),
  )
}
