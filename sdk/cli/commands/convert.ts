import { convert } from '../../runs/convert.js'
import { type Command, intFlag, UsageError } from '../flags.js'
import { startAndFollow } from '../follow-run.js'

const SSM_LAYERS = ['ttt_mlp', 'ttt_linear', 'none'] as const

export const convertCommand: Command = {
  name: 'convert',
  usage: 'ttt-video convert FROM TO [--ssm-layer ttt_mlp|ttt_linear|none] [--seed N] [--copy] [--json]',
  flags: {
    'ssm-layer': { type: 'string' },
    seed: { type: 'string' },
    copy: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(positionals, values) {
    if (positionals.length !== 2)
      throw new UsageError(
        'convert needs FROM (a CogVideoX snapshot or its transformer/) and TO (the bundle folder)',
      )
    const ssmLayer = (values['ssm-layer'] as string | undefined) ?? 'ttt_mlp'
    if (!(SSM_LAYERS as readonly string[]).includes(ssmLayer))
      throw new UsageError(`--ssm-layer must be ${SSM_LAYERS.join(', ')}`)
    const seed = intFlag(values.seed, 'seed', 0)
    return startAndFollow(
      values,
      (hooks) =>
        convert(positionals[0]!, positionals[1]!, {
          ssmLayer: ssmLayer as (typeof SSM_LAYERS)[number],
          ...(seed !== undefined ? { seed } : {}),
          copy: values.copy === true,
          ...hooks,
        }),
      (r) => [r.bundle],
    )
  },
}
