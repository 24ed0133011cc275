import * as z from 'zod'
import { JobConfigSchema, type SectionName } from '../contracts/config/schema.js'
import type { Segment as StoryboardSegment } from '../contracts/storyboard.js'

// The request bodies of the HTTP service, built from the SDK's own zod schemas (the config sections). Their
// JSON Schema becomes components of the served OpenAPI document (openapi-document.ts); nothing copies it.

/** One 3-second segment of a video, as in a storyboard file (sdk/storyboard). */
export const Segment = z.strictObject({
  text: z.string().min(1).describe('The prompt of this 3-second segment'),
  requires_scene_transition: z
    .boolean()
    .optional()
    .describe('A scene cut before this segment (ignored on the first segment)'),
  neg_text: z
    .string()
    .nullable()
    .optional()
    .describe('Negative prompt; absent or null means the empty string'),
})

// Both directions: a storyboard segment is a valid request segment and back.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never
const _segmentMatchesStoryboard: Same<z.infer<typeof Segment>, StoryboardSegment> = true
void _segmentMatchesStoryboard

/** The config sections a request may override: the ones sampling reads. */
export const OVERRIDABLE_SECTIONS = [
  'job',
  'model',
  'parallelism',
  'comm',
  'eval',
  'guider',
  'denoiser',
  'discretization',
  'faithfulness',
] as const satisfies readonly SectionName[]

/** Fields that name a filesystem path: never taken from a request (bundles are chosen by name). */
export const PATH_FIELDS: Partial<Record<SectionName, readonly string[]>> = {
  job: ['config_file', 'dump_folder'],
  eval: ['input_file', 'output_dir', 'vae_checkpoint_path', 't5_model_dir'],
}

type OverridableSection = (typeof OVERRIDABLE_SECTIONS)[number]

function overridableSection(name: OverridableSection) {
  const section = JobConfigSchema.shape[name].unwrap() as unknown as z.ZodObject
  const omit = Object.fromEntries((PATH_FIELDS[name] ?? []).map((f) => [f, true] as const))
  return section.omit(omit as Record<string, true> & Record<number, never>).partial()
}

/**
 * A partial job configuration applied over the preset (the TS `overrides` of `generate()`). The
 * `default` of each field is the configuration's default, which applies when neither the preset nor
 * the request sets it.
 */
export const ConfigOverrides = z.strictObject(
  Object.fromEntries(OVERRIDABLE_SECTIONS.map((s) => [s, overridableSection(s).optional()])) as Record<
    OverridableSection,
    z.ZodOptional<ReturnType<typeof overridableSection>>
  >,
)

export const JOB_ID_PATTERN = /^\d{8}-\d{6}-[0-9a-f]{8}$/
export const BUNDLE_NAME_PATTERN = /^[A-Za-z0-9][\w.-]{0,63}$/
export const PRESET_PATTERN = /^[\w-]+\/[\w-]+$/

/** The body of `POST /v1/jobs`. */
export const JobRequest = z.strictObject({
  storyboards: z
    .array(z.array(Segment).min(1))
    .min(1)
    .describe('The videos to make: each an array of 3-second segments (all videos of a job the same length)'),
  bundle: z
    .string()
    .regex(BUNDLE_NAME_PATTERN)
    .optional()
    .describe("A model bundle by name, one of GET /v1/bundles (default: the server's default bundle)"),
  preset: z
    .string()
    .regex(PRESET_PATTERN)
    .optional()
    .describe('A shipped preset such as "ttt-mlp/9s", one of GET /v1/presets'),
  overrides: ConfigOverrides.optional(),
  seed: z.int().min(0).optional().describe('Base seed (job.seed): video k uses a noise seed from (seed, k)'),
})
export type JobRequest = z.input<typeof JobRequest>
