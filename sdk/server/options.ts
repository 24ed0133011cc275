import { resolve } from 'node:path'
import type { Retention } from './retention.js'
import { BUNDLE_NAME_PATTERN } from './schemas.js'
import type { JobServiceOptions } from './service.js'
import { DEMO_BUNDLE, type Slot } from './validate.js'

// The options of createServer(), checked and filled in with their defaults.

export interface ServerOptions {
  /** Address to bind; default 127.0.0.1 (loopback only). */
  host?: string
  /** Default 8470; 0 picks a free port (see `url` after `listen()`). */
  port?: number
  /**
   * The bearer token; default $TTT_VIDEO_TOKEN, else the one kept in <jobsDir>/token, else a new one,
   * written there once the server listens.
   */
  token?: string
  /** Where jobs live, one folder each; default ./ttt-video-jobs. */
  jobsDir?: string
  /**
   * Model bundles by name (a request names one); values are bundle folders, or `DEMO_BUNDLE` for the
   * shipped demo model (models/demo). Default `{ demo: DEMO_BUNDLE }`.
   */
  bundles?: Record<string, string>
  /** The bundle of requests that name none; default the first of `bundles`. */
  defaultBundle?: string
  /** GPU sets, one job at a time each (values of CUDA_VISIBLE_DEVICES, e.g. ["0,1", "2,3"]). */
  gpuSets?: string[]
  /** Jobs that run at once when no GPU sets are given (CPU processes); default 1. */
  concurrency?: number
  /** Run again the jobs a stopped server left running; default false (they are marked `interrupted`). */
  resume?: boolean
  /** Keep at most this many ended jobs (the newest); older ones are deleted. Default: all. */
  keepJobs?: number
  /** Delete ended jobs that ended more than this many days ago (fractions allowed). Default: never. */
  keepDays?: number
  /** Origins allowed by CORS (`*` for any); default none: CORS off. */
  corsOrigins?: string[]
  /** Largest request body in bytes; default 1 MiB. */
  maxBodyBytes?: number
  /** Most videos in one job; default 16. */
  maxVideosPerJob?: number
  /** Longest prompt (text or neg_text) in characters; default 2000. */
  maxTextChars?: number
  /** Most jobs waiting; default 100. */
  maxQueuedJobs?: number
  /**
   * Niceness of the job processes, 0 to 19; default 0 (the server's priority). A positive value lets the
   * HTTP side answer first on a CPU that Python saturates, at the cost of slower jobs whenever anything
   * else wants the CPU (docs/benchmarks.md).
   */
  jobNice?: number
  /** Milliseconds between keep-alive comments on idle event streams; default 15000. */
  heartbeatMs?: number
  /** The managed Python environment (default: $TTT_VIDEO_VENV or <package>/.venv). */
  venvDir?: string
  /** Things an operator should know (skipped job folders, failed jobs, orphans stopped, jobs deleted). */
  onLog?: (message: string) => void
  /** Where $TTT_VIDEO_TOKEN is read from; default process.env. */
  env?: NodeJS.ProcessEnv
}

/** The options with every default filled in (a bad value was a RangeError): the job service's and HTTP's. */
export interface ResolvedServerOptions extends JobServiceOptions {
  host: string
  port: number
  cors: string[]
  maxBodyBytes: number
  heartbeatMs: number
}

function positiveInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`)
  return value
}

function niceness(value: number | undefined): number {
  if (value === undefined) return 0
  if (!Number.isInteger(value) || value < 0 || value > 19)
    throw new RangeError(`jobNice must be a whole number from 0 to 19, got ${value}`)
  return value
}

function portOf(value: number | undefined): number {
  const port = value ?? 8470
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new RangeError(`port must be a whole number from 0 to 65535, got ${port}`)
  return port
}

function retentionOf(options: ServerOptions): Retention {
  const { keepDays } = options
  if (keepDays !== undefined && !(Number.isFinite(keepDays) && keepDays > 0))
    throw new RangeError(`keepDays must be a number of days above 0, got ${keepDays}`)
  return {
    keepJobs: options.keepJobs === undefined ? undefined : positiveInt(options.keepJobs, 'keepJobs', 1),
    keepDays,
  }
}

export function slotsOf(options: Pick<ServerOptions, 'gpuSets' | 'concurrency'>): Slot[] {
  if (options.gpuSets && options.gpuSets.length > 0) {
    const sizes = options.gpuSets.map((set) => {
      if (!/^\d+(,\d+)*$/.test(set))
        throw new RangeError(`a GPU set is a list of device numbers like "0,1", got "${set}"`)
      return set.split(',').length
    })
    if (new Set(sizes).size > 1) throw new RangeError('every GPU set must have the same number of GPUs')
    if (options.concurrency !== undefined && options.concurrency !== options.gpuSets.length)
      throw new RangeError('concurrency and gpuSets disagree: one job runs at a time per GPU set')
    return options.gpuSets.map((set, index) => ({
      index,
      gpus: sizes[index]!,
      env: { CUDA_VISIBLE_DEVICES: set },
    }))
  }
  const n = positiveInt(options.concurrency, 'concurrency', 1)
  return Array.from({ length: n }, (_, index) => ({ index, gpus: undefined, env: {} }))
}

/** The bundles by name, folders made absolute, and the default bundle. */
function bundlesOf(options: ServerOptions): { bundles: Record<string, string>; defaultBundle: string } {
  const given =
    options.bundles && Object.keys(options.bundles).length > 0 ? options.bundles : { demo: DEMO_BUNDLE }
  const bundles: Record<string, string> = {}
  for (const [name, path] of Object.entries(given)) {
    if (!BUNDLE_NAME_PATTERN.test(name))
      throw new RangeError(`bundle name "${name}" must be letters, digits, '.', '_' or '-' (at most 64)`)
    if (path !== DEMO_BUNDLE && path.trim() === '') throw new RangeError(`bundle "${name}" has no folder`)
    bundles[name] = path === DEMO_BUNDLE ? path : resolve(path)
  }
  const defaultBundle = options.defaultBundle ?? Object.keys(bundles)[0]!
  if (!(defaultBundle in bundles))
    throw new RangeError(`the default bundle "${defaultBundle}" is not configured`)
  return { bundles, defaultBundle }
}

/** Checks every option (a RangeError names the bad one) and fills in the defaults. */
export function resolveServerOptions(options: ServerOptions): ResolvedServerOptions {
  return {
    host: options.host ?? '127.0.0.1',
    port: portOf(options.port),
    jobsDir: resolve(options.jobsDir ?? 'ttt-video-jobs'),
    ...bundlesOf(options),
    slots: slotsOf(options),
    limits: {
      maxVideos: positiveInt(options.maxVideosPerJob, 'maxVideosPerJob', 16),
      maxTextChars: positiveInt(options.maxTextChars, 'maxTextChars', 2000),
    },
    maxQueued: positiveInt(options.maxQueuedJobs, 'maxQueuedJobs', 100),
    resume: options.resume === true,
    retention: retentionOf(options),
    cors: options.corsOrigins ?? [],
    maxBodyBytes: positiveInt(options.maxBodyBytes, 'maxBodyBytes', 1024 * 1024),
    heartbeatMs: positiveInt(options.heartbeatMs, 'heartbeatMs', 15_000),
    jobNice: niceness(options.jobNice),
    venvDir: options.venvDir,
    onLog: options.onLog ?? (() => {}),
  }
}
