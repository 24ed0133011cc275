import type { RunKind } from '../contracts/events.js'
import type { RunProgress } from '../contracts/fold.js'
import { type ProcessLayout, pythonCommand, type ResolvedLayout, runEnvironment } from '../launch/command.js'
import { type LogLine, type Run, startRun } from '../launch/run.js'
import { venvPythonFor } from '../python/paths.js'
import { type SlurmOptions, sbatchCommand, scancel, slurmScripts, writeSlurmScripts } from './slurm.js'

// Starting a Python entry point as a run: here (one process or torchrun), or as a Slurm job.

export interface LaunchOptions {
  layout: ResolvedLayout
  /** Submit to Slurm instead of starting processes here (the run directory must be on shared storage). */
  slurm?: SlurmOptions
  venvDir?: string
  env?: Record<string, string>
  signal?: AbortSignal
  onLog?: (log: LogLine) => void
}

/** What the options of every kind of run share: where it runs, and where its output and log go. */
export interface RunOptions extends ProcessLayout {
  /** Root of run directories; a run goes to <outputDir>/<exp_name>/<run-id> (default: from the config). */
  outputDir?: string
  /** An explicit run directory: resume an interrupted run, or share one between the launchers of nodes. */
  runDir?: string
  /** The managed Python environment (default: $TTT_VIDEO_VENV or <package>/.venv). */
  venvDir?: string
  /** Extra environment variables for the Python processes. */
  env?: Record<string, string>
  signal?: AbortSignal
  /** The processes' output, line by line (never mixed into the events). */
  onLog?: (log: LogLine) => void
  /** Submit the run to Slurm (sbatch) instead of starting processes here (docs/training.md). */
  slurm?: SlurmOptions
}

/** For the functions that resolve a run without starting it (--dry-run): write nothing. */
export interface DryRun {
  dryRun?: boolean
}

export interface LaunchSpec<R> {
  kind: RunKind
  /** The `python -m ttt_video` arguments, e.g. ['train', '--run-dir', R]. */
  entry: readonly string[]
  runDir: string
  collect: (progress: RunProgress, runDir: string, seconds: number) => R
}

/** The command lines a launch would run (for --dry-run and --slurm-dry-run). */
export function launchPlan(spec: Pick<LaunchSpec<unknown>, 'entry' | 'runDir'>, options: LaunchOptions) {
  const python = venvPythonFor(options.venvDir)
  if (!options.slurm) return { command: pythonCommand(python, spec.entry, options.layout) }
  return { scripts: slurmScripts(python, spec.entry, spec.runDir, options.slurm) }
}

export function launchRun<R>(spec: LaunchSpec<R>, options: LaunchOptions): Run<R> {
  const common = {
    kind: spec.kind,
    runDir: spec.runDir,
    collect: spec.collect,
    env: runEnvironment(options.env),
    cwd: process.cwd(),
    ...(options.signal ? { signal: options.signal } : {}),
  }
  const plan = launchPlan(spec, options)
  if (plan.command)
    return startRun({ ...common, command: plan.command, ...(options.onLog ? { onLog: options.onLog } : {}) })
  const slurm = options.slurm!
  const batch = writeSlurmScripts(spec.runDir, plan.scripts!)
  let jobId: string | undefined
  return startRun({
    ...common,
    command: sbatchCommand(batch, slurm),
    onLog: (log) => {
      if (jobId === undefined && log.stream === 'stdout' && /^\d+/.test(log.line))
        jobId = log.line.split(';')[0]
      options.onLog?.(log)
    },
    onCancel: async () => {
      if (jobId !== undefined) await scancel(jobId, slurm, options.env)
    },
  })
}

/** The launch options of a run's public options (the fields every kind of run shares). */
export function launchOptions(
  options: {
    slurm?: SlurmOptions
    venvDir?: string
    env?: Record<string, string>
    signal?: AbortSignal
    onLog?: (log: LogLine) => void
  },
  layout: ResolvedLayout,
): LaunchOptions {
  return {
    layout,
    ...(options.slurm ? { slurm: options.slurm } : {}),
    ...(options.venvDir ? { venvDir: options.venvDir } : {}),
    ...(options.env ? { env: options.env } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onLog ? { onLog: options.onLog } : {}),
  }
}
