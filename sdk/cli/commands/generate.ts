import type { EvalPreset } from '../../contracts/presets.gen.js'
import { callPython } from '../../python/bridge/index.js'
import { type GenerateOptions, generate, prepareGenerate } from '../../runs/generate.js'
import { launchOptions } from '../../runs/launch.js'
import { type Command, err, type Flags, intFlag, JOB_FLAGS, jobFlags, out, UsageError } from '../flags.js'
import { startAndFollow } from '../follow-run.js'
import { printPlan } from '../plan.js'

function options(values: Flags): GenerateOptions {
  if (values.config && values.preset) throw new UsageError('give --config or --preset, not both')
  const seed = intFlag(values.seed, 'seed', 0)
  return {
    ...jobFlags<EvalPreset>(values),
    ...(values.model ? { model: values.model as string } : {}),
    ...(values.out ? { outputDir: values.out as string } : {}),
    ...(seed !== undefined ? { seed } : {}),
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
    ...JOB_FLAGS,
    model: { type: 'string' },
    out: { type: 'string' },
    seed: { type: 'string' },
  },
  async run(positionals, values) {
    if (positionals.length !== 1)
      throw new UsageError('generate needs exactly one STORYBOARD file (.json or .jsonl)')
    const opts = options(values)
    if (values['dry-run'] || values['slurm-dry-run']) return dryRun(positionals[0]!, opts)
    return startAndFollow(
      values,
      (hooks) => generate(positionals[0]!, { ...opts, ...hooks }),
      (result) =>
        values.json === true
          ? { ...result, videos: result.videos.map(({ meta: _m, ...v }) => v) }
          : result.videos.map((v) => v.path),
    )
  },
}
