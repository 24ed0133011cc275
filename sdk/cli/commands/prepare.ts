import type { TrainPreset } from '../../contracts/presets.gen.js'
import { launchOptions } from '../../runs/launch.js'
import { type PrepareOptions, prepare, preparePrepare } from '../../runs/prepare.js'
import { type Command, type Flags, intFlag, JOB_FLAGS, jobFlags, UsageError } from '../flags.js'
import { startAndFollow } from '../follow-run.js'
import { printPlan } from '../plan.js'

function options(annotations: string, values: Flags): PrepareOptions {
  if (values.config && values.preset) throw new UsageError('give --config or --preset, not both')
  if (!values.out) throw new UsageError('prepare needs --out DATASET (the dataset folder to write)')
  if (!values.model) throw new UsageError('prepare needs --model BUNDLE (its VAE and T5 encode the clips)')
  const windowFrames = intFlag(values['window-frames'], 'window-frames', 4)
  return {
    annotations,
    out: values.out as string,
    model: values.model as string,
    ...jobFlags<TrainPreset>(values),
    ...(windowFrames !== undefined ? { windowFrames } : {}),
  }
}

export const prepareCommand: Command = {
  name: 'prepare',
  usage:
    'ttt-video prepare ANNOTATIONS --out DATASET --model BUNDLE [--preset NAME | --config FILE] [--set S.F=V]...\n' +
    '                  [--window-frames N] [--gpus N] [--slurm | --slurm-dry-run] [--run-dir DIR] [--dry-run] [--json]',
  flags: {
    ...JOB_FLAGS,
    out: { type: 'string' },
    model: { type: 'string' },
    'window-frames': { type: 'string' },
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
    return startAndFollow(
      values,
      (hooks) => prepare({ ...opts, ...hooks }),
      (r) => (values.json === true ? r : [`${r.dataset} (${r.clips} clips; run directory ${r.runDir})`]),
    )
  },
}
