import type { EvalPreset } from '../../contracts/presets.gen.js'
import { callPython } from '../../python/bridge/index.js'
import { type GenerateOptions, generate, prepareGenerate } from '../../runs/generate.js'
import { launchOptions } from '../../runs/launch.js'
import {
  type Command,
  cancellation,
  err,
  type Flags,
  intFlag,
  LAYOUT_FLAGS,
  layoutFlags,
  out,
  SLURM_FLAGS,
  slurmFlags,
  UsageError,
} from '../flags.js'
import { followRun } from '../follow-run.js'
import { printPlan } from '../plan.js'

function options(values: Flags): GenerateOptions {
  if (values.config && values.preset) throw new UsageError('give --config or --preset, not both')
  const seed = intFlag(values.seed, 'seed', 0)
  const slurm = slurmFlags(values)
  return {
    ...(slurm ? { slurm } : {}),
    ...(values.config ? { config: values.config as string } : {}),
    ...(values.preset ? { preset: values.preset as EvalPreset } : {}),
    ...(values.model ? { model: values.model as string } : {}),
    ...(values.out ? { outputDir: values.out as string } : {}),
    ...(values['run-dir'] ? { runDir: values['run-dir'] as string } : {}),
    ...(seed !== undefined ? { seed } : {}),
    set: (values.set as string[] | undefined) ?? [],
    ...layoutFlags(values),
    onNotice: (message: string) => err(`note: ${message}`),
  }
}

async function dryRun(storyboard: string, opts: GenerateOptions): Promise<number> {
  const prepared = await prepareGenerate(storyboard, { ...opts, dryRun: true })
  printPlan(prepared.config, prepared, launchOptions(opts, prepared.layout))
  const table = await callPython<string>('ttt_video.sampling.table.format_step_table', {
    config: prepared.config,
  })
  out(`# sampler table\n${table}`)
  return 0
}

export const generateCommand: Command = {
  name: 'generate',
  usage:
    'ttt-video generate STORYBOARD [--config FILE | --preset NAME] [--model BUNDLE] [--set SECTION.FIELD=VALUE]...\n' +
    '                   [--gpus N] [--nnodes N --node-rank K --rdzv-endpoint HOST:PORT [--rdzv-id ID]]\n' +
    '                   [--slurm | --slurm-dry-run] [--slurm-partition P] [--slurm-time T] [--slurm-cpu] [--slurm-option OPT]...\n' +
    '                   [--out DIR] [--run-dir DIR] [--seed N] [--dry-run] [--json]',
  flags: {
    config: { type: 'string' },
    preset: { type: 'string' },
    model: { type: 'string' },
    set: { type: 'string', multiple: true },
    ...LAYOUT_FLAGS,
    ...SLURM_FLAGS,
    out: { type: 'string' },
    'run-dir': { type: 'string' },
    seed: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(positionals, values) {
    if (positionals.length !== 1)
      throw new UsageError('generate needs exactly one STORYBOARD file (.json or .jsonl)')
    const opts = options(values)
    if (values['dry-run'] || values['slurm-dry-run']) return dryRun(positionals[0]!, opts)
    const cancel = cancellation()
    try {
      const verbose = values.verbose === true
      const run = await generate(positionals[0]!, {
        ...opts,
        signal: cancel.signal,
        onLog: ({ line }) => verbose && err(`  | ${line}`),
      })
      return await followRun(run, {
        json: values.json === true,
        cancelled: cancel.exitCode,
        describe: (result) =>
          values.json === true
            ? { ...result, videos: result.videos.map(({ meta: _m, ...v }) => v) }
            : result.videos.map((v) => v.path),
      })
    } finally {
      cancel.dispose()
    }
  },
}
