import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { execa } from 'execa'
import {
  type ConfigObject,
  configToToml,
  type JobConfig,
  mergeConfigObjects,
  parseSetArgs,
  readConfigFile,
  segmentCount,
  VIDEO_LENGTH_FRAMES,
  validateConfig,
} from './config/index.js'
import {
  CancelledError,
  ConfigError,
  PythonRuntimeError,
  StoryboardError,
  WeightsNotFoundError,
} from './errors.js'
import {
  type ProcessLayout,
  type ResolvedLayout,
  resolveLayout,
  sampleCommand,
  sampleEnvironment,
} from './launch/command.js'
import { type LogLine, type Run, startRun } from './launch/run.js'
import { packageRoot, resolveVenvDir, venvExists, venvPython } from './runtime/paths.js'
import {
  checkSegmentCounts,
  readStoryboardFile,
  type Video,
  validateStoryboards,
} from './storyboard/index.js'

export interface GenerateOptions extends ProcessLayout {
  /** A TOML config file, or a partial config object. */
  config?: string | ConfigObject
  /** A shipped preset such as "ttt-mlp/9s" (configs/eval/<preset>.toml); see `listPresets()`. */
  preset?: string
  /** A partial config object applied over the config (`{ eval: { num_denoising_steps: 20 } }`). */
  overrides?: ConfigObject
  /** `section.field=value` strings, applied last (the CLI's --set). */
  set?: readonly string[]
  /** A model bundle folder (sets checkpoint.model_dir). Without one, the tiny random-weight demo model runs. */
  model?: string
  /** Base seed (job.seed). */
  seed?: number
  /** Root of run directories (default: eval.output_dir). The run goes to <outputDir>/<exp_name>/<run-id>. */
  outputDir?: string
  /** An explicit run directory: resume an interrupted run, or share one between the launchers of several nodes. */
  runDir?: string
  /** The managed Python environment (default: $TTT_VIDEO_VENV or <package>/.venv). */
  venvDir?: string
  signal?: AbortSignal
  /** The processes' output, line by line (never mixed into the events). */
  onLog?: (log: LogLine) => void
  /** Things the user should know (e.g. that the demo model's weights are random). */
  onNotice?: (message: string) => void
  /** Extra environment variables for the Python processes. */
  env?: Record<string, string>
  /** Resolve and validate only: write nothing, build nothing (the demo bundle's path is still given). */
  dryRun?: boolean
}

/** Everything a run needs, resolved and validated; no process has started yet. */
export interface PreparedRun {
  config: JobConfig
  videos: Video[]
  layout: ResolvedLayout
  command: string[]
  runDir: string
  demo: boolean
}

export const DEMO_SEED = 0
const DEMO_BUNDLE_VERSION = 1

/** The shipped eval presets: "ttt-mlp/9s", "cogvideox/3s", "tiny/3s", ... */
export function listPresets(): string[] {
  const root = join(packageRoot(), 'configs', 'eval')
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) =>
      readdirSync(join(root, d.name))
        .filter((f) => f.endsWith('.toml'))
        .map((f) => `${d.name}/${f.slice(0, -5)}`),
    )
    .sort()
}

export function presetFile(preset: string): string {
  const file = join(packageRoot(), 'configs', 'eval', `${preset}.toml`)
  if (!/^[\w-]+\/[\w-]+$/.test(preset) || !existsSync(file)) {
    throw new ConfigError([
      { path: 'preset', message: `unknown preset "${preset}"; available: ${listPresets().join(', ')}` },
    ])
  }
  return file
}

/** Where the demo bundle is cached: $TTT_VIDEO_CACHE or ~/.cache/ttt-video. */
export function cacheDir(): string {
  return resolve(process.env.TTT_VIDEO_CACHE ?? join(homedir(), '.cache', 'ttt-video'))
}

export function demoBundlePath(): string {
  return join(cacheDir(), `tiny-bundle-v${DEMO_BUNDLE_VERSION}-seed${DEMO_SEED}`)
}

/** Builds (once) and returns the tiny random-weight demo bundle. */
export async function demoBundle(venvDir?: string, onNotice?: (m: string) => void): Promise<string> {
  const dir = demoBundlePath()
  if (existsSync(join(dir, 'bundle.json'))) return dir
  onNotice?.(`building the tiny demo bundle in ${dir} (once, a few seconds)`)
  mkdirSync(cacheDir(), { recursive: true })
  const python = pythonFor(venvDir)
  const r = await execa(python, ['-m', 'ttt_video', 'make-tiny-bundle', dir, '--seed', String(DEMO_SEED)], {
    reject: false,
  })
  if (r.exitCode !== 0)
    throw new PythonRuntimeError(
      `building the demo bundle failed:\n${r.stderr.split('\n').slice(-10).join('\n')}`,
    )
  return dir
}

function pythonFor(venvDir?: string): string {
  const dir = resolveVenvDir(venvDir)
  if (!venvExists(dir))
    throw new PythonRuntimeError(`no Python environment at ${dir}; run \`npx ttt-video setup\` first`)
  return venvPython(dir)
}

function loadStoryboards(storyboards: Video[] | string): { videos: Video[]; file?: string } {
  if (typeof storyboards === 'string') return { videos: readStoryboardFile(storyboards), file: storyboards }
  return { videos: validateStoryboards(storyboards) }
}

/** The tiny demo config for videos of n segments (3 s per segment). */
function demoConfig(n: number): ConfigObject {
  const base = readConfigFile(presetFile(n === 3 ? 'tiny/9s' : 'tiny/3s'))
  const frames = 12 * n + 1
  const length = Object.entries(VIDEO_LENGTH_FRAMES).find(([, f]) => f >= frames)?.[0]
  if (!length)
    throw new StoryboardError([
      { path: 'video[0]', message: `${n} segments is longer than the longest preset (63 s = 21 segments)` },
    ])
  // 8 text tokens and 24 tokens per frame fill 16-token TTT mini-batches only for odd n (296n + 24);
  // 8-token mini-batches fit every n.
  const miniBatch = n % 2 === 1 ? {} : { mini_batch_size: 8 }
  return mergeConfigObjects(base, {
    eval: { sampling_num_frames: frames },
    model: { video_length: length, ...miniBatch },
  })
}

function checkBundle(dir: string): void {
  if (!existsSync(dir))
    throw new WeightsNotFoundError(
      `the model bundle ${dir} does not exist; convert the CogVideoX-5b snapshot with \`ttt-video convert\``,
    )
  const missing = ['transformer', 'vae', 'text_encoder', 'tokenizer'].filter((p) => !existsSync(join(dir, p)))
  if (missing.length > 0) {
    throw new WeightsNotFoundError(
      `the model bundle ${dir} lacks ${missing.join(', ')}; a bundle holds transformer/, vae/, text_encoder/ and tokenizer/ (see docs/weights.md)`,
    )
  }
}

/**
 * Fits the data-parallel degree to the process count the way the reference's sample_singlenode.sh does:
 * `dp_replicate = processes / (dp_sharding x tp_sharding x cfg_parallel)`, i.e. independent replicas that
 * each sample their own videos. (`dp_sharding > 1` instead FSDP-shards the DiT over the ranks.)
 */
function fitDataParallel(raw: ConfigObject, worldSize: number): ConfigObject {
  const par = (raw.parallelism ?? {}) as Record<string, number | undefined>
  const fixed = (par.dp_sharding ?? 8) * (par.tp_sharding ?? 1) * (par.cfg_parallel ?? 1)
  if (worldSize % fixed !== 0) return raw
  return mergeConfigObjects(raw, { parallelism: { dp_replicate: worldSize / fixed } })
}

/** Resolves and validates everything a run needs, and writes its run directory. Starts no process. */
export async function prepareRun(
  storyboards: Video[] | string,
  options: GenerateOptions = {},
): Promise<PreparedRun> {
  const { videos, file: storyboardFile } = loadStoryboards(storyboards)
  const runId = `${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${randomBytes(3).toString('hex')}`
  let layout: ResolvedLayout
  try {
    layout = resolveLayout(options, runId)
  } catch (e) {
    throw new ConfigError([{ path: 'processes', message: (e as Error).message }])
  }

  if (options.config !== undefined && options.preset !== undefined) {
    throw new ConfigError([{ path: 'config', message: 'give either config or preset, not both' }])
  }
  const fromFile =
    typeof options.config === 'string'
      ? readConfigFile(options.config)
      : options.preset
        ? readConfigFile(presetFile(options.preset))
        : options.config
  const fromSet = options.set && options.set.length > 0 ? parseSetArgs(options.set) : undefined
  const modelDir =
    options.model ??
    (mergeConfigObjects(fromFile, options.overrides, fromSet).checkpoint?.model_dir as string | undefined)
  const demo = modelDir === undefined || modelDir === null
  let base = fromFile
  let bundle: string
  if (demo) {
    if (fromFile !== undefined && !((fromFile.model as { size?: string } | undefined)?.size === 'tiny')) {
      throw new WeightsNotFoundError(
        'no model bundle: pass a model (--model BUNDLE, or checkpoint.model_dir) for this config, or leave out the config to run the tiny demo model',
      )
    }
    base = mergeConfigObjects(demoConfig(videos[0]?.length ?? 1), fromFile)
    options.onNotice?.(
      'no model given: using the tiny demo model with RANDOM weights (the video shows the pipeline, not real content). Convert CogVideoX-5b with `ttt-video convert` and pass it with --model / { model } for real videos.',
    )
    bundle = options.dryRun ? demoBundlePath() : await demoBundle(options.venvDir, options.onNotice)
  } else {
    bundle = resolve(modelDir)
    checkBundle(bundle)
  }

  const raw = fitDataParallel(
    mergeConfigObjects(
      base,
      options.overrides,
      fromSet,
      { checkpoint: { model_dir: bundle } },
      options.seed !== undefined ? { job: { seed: options.seed } } : undefined,
    ),
    layout.worldSize,
  )
  if (typeof options.config === 'string') raw.job = { ...(raw.job ?? {}), config_file: options.config }
  const config = validateConfig(raw, {
    worldSize: layout.worldSize,
    checkPaths: !(demo && options.dryRun),
    ...(typeof options.config === 'string' ? { file: options.config } : {}),
  })
  checkSegmentCounts(videos, segmentCount(config)!, storyboardFile)

  const runDir = resolve(
    options.runDir ?? join(options.outputDir ?? config.eval.output_dir, config.job.exp_name, runId),
  )
  if (!options.dryRun) {
    mkdirSync(runDir, { recursive: true })
    writeAtomic(join(runDir, 'config.toml'), configToToml(config))
    writeAtomic(join(runDir, 'storyboards.jsonl'), videos.map((v) => `${JSON.stringify(v)}\n`).join(''))
  }
  const configFile = join(runDir, 'config.toml')
  const command = sampleCommand(pythonFor(options.venvDir), configFile, runDir, {
    ...layout,
    rdzvId: options.rdzvId ?? layout.rdzvId,
  })
  return { config, videos, layout, command, runDir, demo }
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(tmp, text)
  renameSync(tmp, file)
}

/**
 * Starts a generation: validates everything first (no process starts on a bad input), writes the run
 * directory, and launches one Python process or torchrun. The returned `Run` is an async iterable of
 * typed events with a `result` promise and `cancel()`.
 */
export async function generate(storyboards: Video[] | string, options: GenerateOptions = {}): Promise<Run> {
  if (options.signal?.aborted) throw new CancelledError('aborted before the run started')
  const prepared = await prepareRun(storyboards, options)
  return startRun({
    command: prepared.command,
    runDir: prepared.runDir,
    videoCount: prepared.videos.length,
    env: sampleEnvironment(prepared.layout, options.env),
    cwd: process.cwd(),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onLog ? { onLog: options.onLog } : {}),
  })
}

/** A path relative to the working directory when that is shorter (for messages). */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path)
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path
}
