import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { checkBundle } from '../contracts/bundle.js'
import { configToToml } from '../contracts/config/load.js'
import { mergeConfigObjects } from '../contracts/config/overrides.js'
import type { JobConfig } from '../contracts/config/schema.js'
import { validateConfig } from '../contracts/config/validate.js'
import type { TrainPreset } from '../contracts/presets.gen.js'
import { RUN_FILES } from '../contracts/run-dir.js'
import { CancelledError, ConfigError } from '../errors.js'
import { type ResolvedLayout, resolveLayout } from '../launch/command.js'
import type { Run } from '../launch/run.js'
import { type DryRun, launchOptions, launchRun, type RunOptions } from './launch.js'
import { makeDirectory, writeAtomic } from './output-dir.js'
import { type ConfigSource, requestedConfig } from './requested-config.js'
import { slurmLayout } from './slurm.js'

export interface PrepareOptions extends RunOptions, ConfigSource {
  /** The annotation file: one JSON line per clip, `{"clip": "a.mp4", "segments": [...]}` (docs/training.md). */
  annotations: string
  /** The dataset folder to write or extend (training.dataset_path of the training runs). */
  out: string
  /** The model bundle whose VAE encoder and T5 encode the clips (checkpoint.model_dir). */
  model: string
  /** A training preset: its resolution, frame rate and txt_maxlen are the dataset's (default ttt-mlp/3s). */
  preset?: TrainPreset
  /** Frames the VAE encodes at a time, a multiple of 4 (default 48, as the reference). */
  windowFrames?: number
}

export interface PrepareResult {
  dataset: string
  runDir: string
  /** Clips in the dataset now (this run's and earlier runs'). */
  clips: number
  seconds: number
}

export interface PreparedPrepare {
  config: JobConfig
  layout: ResolvedLayout
  runDir: string
  entry: string[]
}

/** Resolves and validates a prepare run; writes its run directory unless `dryRun`. Starts nothing. */
export function preparePrepare(options: PrepareOptions & DryRun): PreparedPrepare {
  if (!existsSync(options.annotations))
    throw new ConfigError([{ path: 'annotations', message: `${options.annotations} does not exist` }])
  if (options.windowFrames !== undefined && !(options.windowFrames >= 4 && options.windowFrames % 4 === 0))
    throw new ConfigError([
      { path: 'windowFrames', message: `must be a positive multiple of 4, got ${options.windowFrames}` },
    ])
  const bundle = resolve(options.model)
  checkBundle(bundle)
  const layout = options.slurm ? slurmLayout(options.slurm) : resolveLayout(options, `prepare-${Date.now()}`)
  const source = options.config === undefined && options.preset === undefined ? { preset: 'ttt-mlp/3s' } : {}
  const { raw, file } = requestedConfig({ ...options, ...source }, 'train')
  const paths = {
    checkpoint: { model_dir: bundle },
    eval: { input_file: resolve(options.annotations) },
    training: { dataset_path: resolve(options.out) },
  }
  const config = validateConfig(mergeConfigObjects(raw, paths), {
    worldSize: layout.worldSize,
    runKind: 'prepare',
    checkPaths: true,
    ...(file ? { file } : {}),
  })
  const runDir = resolve(
    options.runDir ?? join(options.outputDir ?? config.job.dump_folder, config.job.exp_name, layout.rdzvId),
  )
  const window = options.windowFrames !== undefined ? ['--window-frames', String(options.windowFrames)] : []
  if (!options.dryRun) {
    makeDirectory(runDir, options.runDir ? 'runDir' : 'outputDir')
    writeAtomic(join(runDir, RUN_FILES.config), configToToml(config))
  }
  return { config, layout, runDir, entry: ['prepare', '--run-dir', runDir, ...window] }
}

/** Clips listed in a dataset folder's manifest. */
export function datasetClips(dataset: string): number {
  const manifest = join(dataset, 'manifest.jsonl')
  if (!existsSync(manifest)) return 0
  return readFileSync(manifest, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '').length
}

/**
 * Encodes video clips and their annotations into a training dataset folder (VAE moments and T5 states
 * per clip), as a run with `prepare.clip` events. Re-running skips the clips already in the folder;
 * with several processes each encodes its share.
 */
export async function prepare(options: PrepareOptions): Promise<Run<PrepareResult>> {
  if (options.signal?.aborted) throw new CancelledError('aborted before the run started')
  const prepared = preparePrepare(options)
  const dataset = resolve(options.out)
  const collect = (_progress: unknown, runDir: string, seconds: number) => ({
    dataset,
    runDir,
    clips: datasetClips(dataset),
    seconds,
  })
  return launchRun(
    { kind: 'prepare', entry: prepared.entry, runDir: prepared.runDir, collect },
    launchOptions(options, prepared.layout),
  )
}
