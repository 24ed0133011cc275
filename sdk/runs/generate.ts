import { randomBytes } from 'node:crypto'
import { join, resolve } from 'node:path'
import { checkBundle } from '../contracts/bundle.js'
import { configToToml } from '../contracts/config/load.js'
import { type ConfigObject, mergeConfigObjects } from '../contracts/config/overrides.js'
import { type JobConfig, JobConfigSchema } from '../contracts/config/schema.js'
import { segmentCount, validateConfig } from '../contracts/config/validate.js'
import type { RunProgress } from '../contracts/fold.js'
import type { EvalPreset } from '../contracts/presets.gen.js'
import { checkResumable, RUN_FILES } from '../contracts/run-dir.js'
import {
  checkSegmentCounts,
  readStoryboardFile,
  type Video,
  validateStoryboards,
} from '../contracts/storyboard.js'
import { CancelledError, WeightsNotFoundError } from '../errors.js'
import { type ResolvedLayout, resolveLayout } from '../launch/command.js'
import type { Run } from '../launch/run.js'
import { demoBundle, demoConfig, tinyBundle, tinyBundlePath } from './demo.js'
import { type DryRun, launchOptions, launchRun, type RunOptions } from './launch.js'
import { makeDirectory, writeAtomic } from './output-dir.js'
import { type ConfigSource, requestedConfig } from './requested-config.js'
import { collectVideos, type GenerateResult } from './results.js'
import { slurmLayout } from './slurm.js'

export type { ConfigOverrides } from './requested-config.js'

export interface GenerateOptions extends RunOptions, ConfigSource {
  /** A shipped preset (configs/eval/<preset>.toml). */
  preset?: EvalPreset
  /** A model bundle folder (sets checkpoint.model_dir). Without one, the demo model runs. */
  model?: string
  /** Base seed (job.seed). */
  seed?: number
  /** Root of run directories (default: eval.output_dir). The run goes to <outputDir>/<exp_name>/<run-id>. */
  outputDir?: string
  /** Things the user should know (e.g. that the demo model's weights are random). */
  onNotice?: (message: string) => void
}

/** Everything a run needs, resolved and validated; no process has started yet. */
export interface PreparedRun {
  config: JobConfig
  videos: Video[]
  layout: ResolvedLayout
  /** The `python -m ttt_video` arguments of the run. */
  entry: string[]
  runDir: string
  demo: boolean
}

const newRunId = () =>
  `${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${randomBytes(3).toString('hex')}`

function loadStoryboards(storyboards: Video[] | string): { videos: Video[]; file?: string } {
  if (typeof storyboards === 'string') return { videos: readStoryboardFile(storyboards), file: storyboards }
  return { videos: validateStoryboards(storyboards) }
}

/** The model: a bundle the user named, or the demo model (whose config then fills what is not given). */
async function resolveModel(
  { base, raw }: { base: ConfigObject | undefined; raw: ConfigObject },
  videos: Video[],
  options: GenerateOptions & DryRun,
) {
  const modelDir = options.model ?? (raw.checkpoint?.model_dir as string | null | undefined)
  if (modelDir !== undefined && modelDir !== null) {
    const bundle = resolve(modelDir)
    checkBundle(bundle)
    return { bundle, demo: false, base: raw }
  }
  // a file or preset describes a whole model (5B unless it says demo or tiny); a config object only what
  // it names
  const size = (base?.model as { size?: string } | undefined)?.size
  const named = typeof options.config === 'string' || options.preset !== undefined
  const local = size === 'demo' || size === 'tiny'
  if (base !== undefined && !local && (named || size !== undefined))
    throw new WeightsNotFoundError(
      'no model bundle: pass a model (--model BUNDLE, or checkpoint.model_dir) for this config, or leave out the config to run the demo model',
    )
  const model = size === 'tiny' ? 'tiny' : 'demo'
  options.onNotice?.(LOCAL_MODEL_NOTICES[model])
  const bundle =
    model === 'demo'
      ? await demoBundle()
      : options.dryRun
        ? tinyBundlePath()
        : await tinyBundle(options.venvDir, options.onNotice)
  return { bundle, demo: true, base: mergeConfigObjects(demoConfig(videos[0]?.length ?? 1, model), raw) }
}

const REAL_VIDEOS =
  'Convert CogVideoX-5b with `ttt-video convert`, fine-tune it (docs/training.md) and pass it with --model / { model } for real videos.'
const LOCAL_MODEL_NOTICES = {
  demo: `no model given: using the demo model, trained on the synthetic demo world (docs/demo-world.md: one coloured shape on a plain background per scene, described in that world's sentences). ${REAL_VIDEOS}`,
  tiny: `no model given: using the tiny model with RANDOM weights (the video shows the pipeline, not content). ${REAL_VIDEOS}`,
}

/**
 * Fits the data-parallel degree to the process count the way the reference's sample_singlenode.sh does:
 * `dp_replicate = processes / (dp_sharding x tp_sharding x cfg_parallel)`, i.e. independent replicas that
 * each sample their own videos. (`dp_sharding > 1` instead FSDP-shards the DiT over the ranks.)
 */
function fitDataParallel(raw: ConfigObject, worldSize: number): ConfigObject {
  const { parallelism: p } = JobConfigSchema.parse(raw)
  const fixed = p.dp_sharding * p.tp_sharding * p.cfg_parallel
  if (worldSize % fixed !== 0) return raw
  return mergeConfigObjects(raw, { parallelism: { dp_replicate: worldSize / fixed } })
}

/** Resolves and validates everything a run needs, and writes its run directory. Starts no process. */
export async function prepareGenerate(
  storyboards: Video[] | string,
  options: GenerateOptions & DryRun = {},
): Promise<PreparedRun> {
  const { videos, file: storyboardFile } = loadStoryboards(storyboards)
  const layout = options.slurm ? slurmLayout(options.slurm) : resolveLayout(options, newRunId())
  const { bundle, demo, base } = await resolveModel(requestedConfig(options, 'eval'), videos, options)
  const seed = options.seed !== undefined ? { job: { seed: options.seed } } : undefined
  const merged = mergeConfigObjects(base, { checkpoint: { model_dir: bundle } }, seed)
  const config = validateConfig(fitDataParallel(merged, layout.worldSize), {
    worldSize: layout.worldSize,
    runKind: 'sample',
    checkPaths: !(demo && options.dryRun),
    ...(typeof options.config === 'string' ? { file: options.config } : {}),
  })
  checkSegmentCounts(videos, segmentCount(config)!, storyboardFile)
  const runDir = resolve(
    options.runDir ?? join(options.outputDir ?? config.eval.output_dir, config.job.exp_name, layout.rdzvId),
  )
  if (!options.dryRun) writeRunDirectory(runDir, config, videos, options.runDir ? 'runDir' : 'outputDir')
  return { config, videos, layout, entry: ['sample', '--run-dir', runDir], runDir, demo }
}

function writeRunDirectory(runDir: string, config: JobConfig, videos: Video[], option: string): void {
  checkResumable(runDir, config, videos)
  makeDirectory(runDir, option)
  writeAtomic(join(runDir, RUN_FILES.config), configToToml(config))
  writeAtomic(join(runDir, RUN_FILES.storyboards), videos.map((v) => `${JSON.stringify(v)}\n`).join(''))
}

/**
 * Starts a generation: validates everything first (no process starts on a bad input), writes the run
 * directory, and launches one Python process or torchrun. The returned `Run` is an async iterable of
 * typed events with a `result` promise and `cancel()`.
 */
export async function generate(
  storyboards: Video[] | string,
  options: GenerateOptions = {},
): Promise<Run<GenerateResult>> {
  if (options.signal?.aborted) throw new CancelledError('aborted before the run started')
  const prepared = await prepareGenerate(storyboards, options)
  const collect = (progress: RunProgress, runDir: string, seconds: number) =>
    collectVideos(progress, runDir, prepared.videos.length, seconds)
  return launchRun(
    { kind: 'sample', entry: prepared.entry, runDir: prepared.runDir, collect },
    launchOptions(options, prepared.layout),
  )
}
