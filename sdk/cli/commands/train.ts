import { exportBundle } from '../../runs/export.js'
import { launchOptions } from '../../runs/launch.js'
import { prepareTrain, type TrainOptions, type TrainResult, train } from '../../runs/train.js'
import {
  type Command,
  cancellation,
  err,
  type Flags,
  intFlag,
  JOB_FLAGS,
  jobFlags,
  out,
  UsageError,
} from '../flags.js'
import { followRun } from '../follow-run.js'
import { printPlan } from '../plan.js'

function options(values: Flags): TrainOptions {
  if (values.config && values.preset) throw new UsageError('give --config or --preset, not both')
  if (!values.data) throw new UsageError('train needs --data DATASET (a folder made by `ttt-video prepare`)')
  const stages = values.stages ? String(values.stages).split(',').filter(Boolean) : undefined
  const seed = intFlag(values.seed, 'seed', 0)
  return {
    data: values.data as string,
    ...jobFlags<NonNullable<TrainOptions['preset']>>(values),
    ...(stages ? { stages } : {}),
    ...(values.init ? { init: values.init as string } : {}),
    ...(values.model ? { model: values.model as string } : {}),
    ...(values.out ? { outputDir: values.out as string } : {}),
    ...(seed !== undefined ? { seed } : {}),
  }
}

function describe(result: TrainResult): string[] {
  const loss = (l: number | null) => (l === null ? 'no step in this run' : `loss ${l.toPrecision(4)}`)
  return [
    ...result.stages.map((s) => `${s.stage}: ${s.steps} steps, ${loss(s.loss)}, checkpoint ${s.checkpoint}`),
    `loss curves: ${result.stages.map((s) => `${s.runDir}/loss.svg`).join(', ')}`,
  ]
}

async function run(opts: TrainOptions, values: Flags): Promise<number> {
  const cancel = cancellation()
  const json = values.json === true
  try {
    const started = await train({
      ...opts,
      signal: cancel.signal,
      onLog: ({ line }) => values.verbose === true && err(`  | ${line}`),
    })
    const code = await followRun(started, {
      json,
      cancelled: cancel.exitCode,
      describe: (result) => (json ? result : describe(result)),
    })
    const last = (await started.result.catch(() => undefined))?.stages.at(-1)
    if (code !== 0 || !values.export || !last) return code
    if (!json) err(`exporting ${last.checkpoint} to ${values.export} ...`)
    const { bundle, seconds } = await exportBundle(last.checkpoint, values.export as string, {
      signal: cancel.signal,
    })
    out(json ? JSON.stringify({ type: 'export', bundle, seconds }) : `bundle: ${bundle}`)
    return 0
  } finally {
    cancel.dispose()
  }
}

export const trainCommand: Command = {
  name: 'train',
  usage:
    'ttt-video train [CONFIG] --data DATASET [--preset NAME [--stages 3s,9s,...]] [--init BUNDLE|CHECKPOINT]\n' +
    '                [--model BUNDLE] [--set SECTION.FIELD=VALUE]... [--gpus N] [--nnodes N ...] [--slurm | --slurm-dry-run]\n' +
    '                [--out DIR] [--run-dir DIR] [--seed N] [--export BUNDLE] [--dry-run] [--json]',
  flags: {
    ...JOB_FLAGS,
    data: { type: 'string' },
    stages: { type: 'string' },
    init: { type: 'string' },
    model: { type: 'string' },
    out: { type: 'string' },
    seed: { type: 'string' },
    export: { type: 'string' },
  },
  async run(positionals, values) {
    if (positionals.length > 1) throw new UsageError('train takes at most one CONFIG file')
    if (positionals[0] && values.config)
      throw new UsageError('give the CONFIG file once (positional or --config)')
    const opts = options(positionals[0] ? { ...values, config: positionals[0] } : values)
    if (!values['dry-run'] && !values['slurm-dry-run']) return run(opts, values)
    const { stages, layout } = prepareTrain(opts)
    for (const stage of stages) {
      out(`## stage ${stage.stage}`)
      printPlan(stage.config, stage, launchOptions(opts, layout))
    }
    return 0
  },
}
