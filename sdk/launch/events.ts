import * as z from 'zod'

// The event protocol (contract 3), mirrored by python/ttt_video/events.py. One JSON object per line of
// the run directory's events.jsonl; the launcher follows the file and validates every line here.

export const EVENT_SCHEMA_VERSION = 1

export const ERROR_CODES = [
  'CONFIG',
  'STORYBOARD',
  'WEIGHTS_MISSING',
  'OUT_OF_MEMORY',
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
const video = z.int().min(0).describe('global index of the video in the storyboard file')

export const RunEvent = z.discriminatedUnion('type', [
  z.object({
    ...base,
    type: z.literal('run.started'),
    run_dir: z.string(),
    world_size: z.int().min(1),
    videos: z.int().min(0),
    device: z.string(),
  }),
  z.object({ ...base, type: z.literal('model.loading'), component: z.string() }),
  z.object({ ...base, type: z.literal('model.loaded'), component: z.string(), seconds }),
  z.object({
    ...base,
    type: z.literal('prompt.started'),
    video,
    segments: z.int().min(1),
    frames: z.int().min(1),
  }),
  z.object({ ...base, type: z.literal('prompt.skipped'), video, reason: z.string() }),
  z.object({
    ...base,
    type: z.literal('step'),
    video,
    index: z.int().min(0),
    total: z.int().min(1),
    elapsed: seconds,
    eta: seconds.nullable(),
  }),
  z.object({
    ...base,
    type: z.literal('decode.window'),
    video,
    index: z.int().min(0),
    total: z.int().min(1),
    frames: z.int().min(0),
    elapsed: seconds,
  }),
  z.object({
    ...base,
    type: z.literal('video.written'),
    video,
    path: z.string(),
    frames: z.int().min(1),
    fps: z.number().positive(),
    seconds,
  }),
  z.object({ ...base, type: z.literal('prompt.finished'), video, seconds }),
  z.object({ ...base, type: z.literal('run.finished'), videos: z.int().min(0), seconds }),
  z.object({
    ...base,
    type: z.literal('error'),
    code: z.enum(ERROR_CODES),
    message: z.string(),
    hint: z.string().optional(),
    traceback: z.string().optional(),
  }),
])
export type RunEvent = z.infer<typeof RunEvent>
export type RunEventType = RunEvent['type']
