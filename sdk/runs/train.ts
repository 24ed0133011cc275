import { existsSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { configToToml, readConfigFile } from '../contracts/config/load.js'
import { type ConfigObject, mergeConfigObjects, parseSetArgs } from '../contracts/config/overrides.js'
import type { JobConfig } from '../contracts/config/schema.js'
import { schemaIssues, validateConfig } from '../contracts/config/validate.js'
import type { RunProgress } from '../contracts/fold.js'
import type { TrainPreset } from '../contracts/presets.gen.js'

/** The family of a training preset: "ttt-mlp" of "ttt-mlp/9s" (the stages name the rest). */
export type TrainPresetFamily = TrainPreset extends `${infer F}/${string}` ? F : never

import { RUN_FILES } from '../contracts/run-dir.js'
import { CancelledError, ConfigError, WeightsNotFoundError } from '../errors.js'
import { type ResolvedLayout, resolveLayout } from '../launch/command.js'
import type { Run } from '../launch/run.js'
import type { ConfigOverrides } from './generate.js'
import { launchOptions, launchRun, type RunOptions } from './launch.js'
import { makeDirectory, writeAtomic } from './output-dir.js'
import { presetFile } from './presets.js'
import { chainRuns } from './sequence.js'
import { slurmLayout } from './slurm.js'

export interface TrainOptions extends RunOptions {
  /** A TOML config file or a partial config object (over the preset of each stage, if any). */
  config?: string | ConfigOverrides
  /** A shipped training preset (configs/train/<preset>.toml); with `stages`, its family ("ttt-mlp"). */
  preset?: TrainPreset | TrainPresetFamily
  /** Staged context extension: the lengths to train, in order ("3s", "9s", ...), each from the previous. */
  stages?: readonly string[]
  overrides?: ConfigOverrides
  set?: readonly string[]
  /** The dataset folder of `prepare()` (training.dataset_path). */
  data: string
  /** Where training starts: a model bundle (checkpoint.model_dir) or a DCP checkpoint folder. */
  init?: string
  /** With a DCP `init`: the bundle that gives the architecture and, for export, vae/ and T5. */
  model?: string
  seed?: number
}

export interface StageResult {
  stage: string
  runDir: string
  /** The final checkpoint (DCP folder), the next stage's start and what `exportBundle` reads. */
  checkpoint: string
  steps: number
  loss: number | null
}

export interface TrainResult {
  runDir: string
  stages: StageResult[]
  seconds: number
}

export interface PreparedStage {
  stage: string
  config: JobConfig
  runDir: string
  entry: string[]
}

/** The DCP folder of the checkpoint a run writes at `step` (contract 2). */
export const checkpointDir = (runDir: string, step: number) =>
  join(runDir, RUN_FILES.checkpoints, `step-${step}`)

/** The init flags of a run: a bundle sets checkpoint.model_dir, a DCP folder checkpoint.init_state_dir. */
function initFields(init: string | undefined, model: string | undefined): ConfigObject {
  const bundle = model ? { model_dir: resolve(model) } : {}
  if (init === undefined) return { checkpoint: bundle }
  const path = resolve(init)
  if (existsSync(join(path, '.metadata'))) return { checkpoint: { ...bundle, init_state_dir: path } }
  if (existsSync(join(path, 'transformer'))) return { checkpoint: { model_dir: path } }
  throw new WeightsNotFoundError(
    `--init ${init} is neither a model bundle (transformer/, vae/, ...) nor a torch.distributed.checkpoint folder (.metadata)`,
  )
}

function stageConfigs(options: TrainOptions): { stage: string; raw: ConfigObject; file?: string }[] {
  const user =
    typeof options.config === 'string'
      ? readConfigFile(options.config)
      : (options.config as ConfigObject | undefined)
  const fromSet = options.set && options.set.length > 0 ? parseSetArgs(options.set) : undefined
  const stages = options.stages && options.stages.length > 0 ? options.stages : [undefined]
  return stages.map((stage) => {
    if (stage !== undefined && !options.preset)
      throw new ConfigError([
        { path: 'preset', message: 'stages need a preset variant (e.g. ttt-mlp or tiny)' },
      ])
    const preset = stage === undefined ? options.preset : `${options.preset}/${stage}`
    const file = preset
      ? presetFile(preset, 'train')
      : typeof options.config === 'string'
        ? options.config
        : undefined
    const base = preset ? readConfigFile(file!) : undefined
    const raw = mergeConfigObjects(base, user, options.overrides as ConfigObject | undefined, fromSet)
    return { stage: stage ?? preset?.split('/').at(-1) ?? 'train', raw, ...(file ? { file } : {}) }
  })
}

/** Validates every stage before anything starts; stage k > 0 starts from stage k-1's final checkpoint. */
export function prepareTrain(options: TrainOptions): {
  stages: PreparedStage[]
  layout: ResolvedLayout
  root: string
} {
  const layout = options.slurm ? slurmLayout(options.slurm) : resolveLayout(options, `train-${Date.now()}`)
  const seed = options.seed !== undefined ? { job: { seed: options.seed } } : undefined
  const data = { training: { dataset_path: resolve(options.data) } }
  const stages: PreparedStage[] = []
  let root = ''
  for (const [index, { stage, raw, file }] of stageConfigs(options).entries()) {
    const issues = schemaIssues(raw)
    if (issues.length > 0) throw new ConfigError(issues, file)
    const previous = stages.at(-1)
    const init = previous
      ? { checkpoint: { init_state_dir: checkpointDir(previous.runDir, previous.config.training.steps) } }
      : initFields(options.init, options.model)
    const merged = mergeConfigObjects(raw, data, initFields(undefined, options.model), init, seed)
    const config = validateConfig(merged, {
      worldSize: layout.worldSize,
      runKind: 'train',
      checkPaths: index === 0,
      ...(file ? { file } : {}),
    })
    root ||= resolve(
      options.runDir ?? join(options.outputDir ?? config.job.dump_folder, config.job.exp_name, layout.rdzvId),
    )
    const runDir = options.stages?.length ? join(root, `stage-${stage}`) : root
    const entry = [
      'train',
      '--run-dir',
      runDir,
      ...(options.stages?.length
        ? ['--stage', stage, '--stage-index', String(index), '--stages', String(options.stages.length)]
        : []),
    ]
    stages.push({ stage, config, runDir, entry })
  }
  return { stages, layout, root }
}

function writeStage(stage: PreparedStage, option: string): void {
  makeDirectory(stage.runDir, option)
  writeAtomic(join(stage.runDir, RUN_FILES.config), configToToml(stage.config))
}

function stageResult(stage: PreparedStage, progress: RunProgress): StageResult {
  const steps = stage.config.training.steps
  return {
    stage: stage.stage,
    runDir: stage.runDir,
    checkpoint: checkpointDir(stage.runDir, steps),
    steps,
    loss: progress.training?.loss ?? null,
  }
}

/** The newest checkpoint folders of a run directory (for resuming and for tests). */
export function checkpoints(runDir: string): string[] {
  const dir = join(runDir, RUN_FILES.checkpoints)
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((n) => /^step-\d+$/.test(n))
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)))
}

/**
 * Fine-tunes the DiT on a prepared dataset: one run, or the stages of a staged context extension one
 * after another (each its own run directory, resumable). The `Run` gives every stage's events in order.
 */
export async function train(options: TrainOptions): Promise<Run<TrainResult>> {
  if (options.signal?.aborted) throw new CancelledError('aborted before the run started')
  const { stages, layout, root } = prepareTrain(options)
  const started = performance.now()
  const starts = stages.map((stage) => () => {
    writeStage(stage, options.runDir ? 'runDir' : 'outputDir')
    const collect = (progress: RunProgress) => stageResult(stage, progress)
    return launchRun(
      { kind: 'train', entry: stage.entry, runDir: stage.runDir, collect },
      launchOptions(options, layout),
    )
  })
  return chainRuns('train', root, starts, (results) => ({
    runDir: root,
    stages: results,
    seconds: Math.round(performance.now() - started) / 1000,
  }))
}
