import type { TrainPreset } from '../../contracts/presets.gen.js'
import { launchOptions } from '../../runs/launch.js'
import { type PrepareOptions, prepare, preparePrepare } from '../../runs/prepare.js'
import {
  type Command,
  cancellation,
  err,
  type Flags,
  intFlag,
  LAYOUT_FLAGS,
  layoutFlags,
  SLURM_FLAGS,
  slurmFlags,
  UsageError,
} from '../flags.js'
import { followRun } from '../follow-run.js'
import { printPlan } from '../plan.js'

function options(annotations: string, values: Flags): PrepareOptions {
  if (values.config && values.preset) throw new UsageError('give --config or --preset, not both')
  if (!values.out) throw new UsageError('prepare needs --out DATASET (the dataset folder to write)')
  if (!values.model) throw new UsageError('prepare needs --model BUNDLE (its VAE and T5 encode the clips)')
  const windowFrames = intFlag(values['window-frames'], 'window-frames', 4)
  const slurm = slurmFlags(values)
  return {
    annotations,
    out: values.out as string,
    model: values.model as string,
    ...(slurm ? { slurm } : {}),
    ...(values.config ? { config: values.config as string } : {}),
    ...(values.preset ? { preset: values.preset as TrainPreset } : {}),
    ...(values['run-dir'] ? { runDir: values['run-dir'] as string } : {}),
    ...(windowFrames !== undefined ? { windowFrames } : {}),
    set: (values.set as string[] | undefined) ?? [],
    ...layoutFlags(values),
  }
}

export const prepareCommand: Command = {
  name: 'prepare',
  usage:
    'ttt-video prepare ANNOTATIONS --out DATASET --model BUNDLE [--preset NAME | --config FILE] [--set S.F=V]...\n' +
    '                  [--window-frames N] [--gpus N] [--slurm | --slurm-dry-run] [--run-dir DIR] [--dry-run] [--json]',
  flags: {
    out: { type: 'string' },
    model: { type: 'string' },
    config: { type: 'string' },
    preset: { type: 'string' },
    set: { type: 'string', multiple: true },
    'window-frames': { type: 'string' },
    ...LAYOUT_FLAGS,
    ...SLURM_FLAGS,
    'run-dir': { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(positionals, values) {
    if (positionals.length !== 1)
      throw new UsageError('prepare needs exactly one ANNOTATIONS file (one JSON line per clip)')
    const opts = options(positionals[0]!, values)
    if (values['dry-run'] || values['slurm-dry-run']) {
      const prepared = preparePrepare({ ...opts, dryRun: true })
      printPlan(prepared.config, prepared, launchOptions(opts, prepared.layout))
      return 0
    }
    const cancel = cancellation()
    try {
      const run = await prepare({
        ...opts,
        signal: cancel.signal,
        onLog: ({ line }) => values.verbose === true && err(`  | ${line}`),
      })
      return await followRun(run, {
        json: values.json === true,
        cancelled: cancel.exitCode,
        describe: (r) =>
          values.json === true ? r : [`${r.dataset} (${r.clips} clips; run directory ${r.runDir})`],
      })
    } finally {
      cancel.dispose()
    }
  },
}
