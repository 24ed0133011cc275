import { segmentCount } from '../../contracts/config/validate.js'
import { checkSegmentCounts, readStoryboardFile, segmentPrompts } from '../../contracts/storyboard.js'
import { type Command, out, UsageError } from '../flags.js'
import { CONFIG_FLAGS, configFromFlags } from './config.js'

export const storyboardCommand: Command = {
  name: 'storyboard',
  usage:
    'ttt-video storyboard check FILE (--config FILE | --preset NAME) [--set SECTION.FIELD=VALUE]... [--json]',
  flags: { ...CONFIG_FLAGS, config: { type: 'string' } },
  async run([sub, ...positionals], values) {
    if (sub !== 'check') throw new UsageError(`unknown storyboard command "${sub ?? ''}"; use check`)
    if (positionals.length !== 1) throw new UsageError('storyboard check needs exactly one FILE')
    if (!values.config && !values.preset)
      throw new UsageError(
        'storyboard check needs --config FILE or --preset NAME (the number of segments comes from it)',
      )
    const file = positionals[0]!
    const config = configFromFlags(values.config as string | undefined, values)
    const n = segmentCount(config)!
    const videos = readStoryboardFile(file)
    checkSegmentCounts(videos, n, file)
    const prompts = videos.map(segmentPrompts)
    if (values.json) {
      out(JSON.stringify({ ok: true, videos: prompts }, null, 2))
      return 0
    }
    out(
      `${file}: ${videos.length} video${videos.length === 1 ? '' : 's'} of ${n} segment${n === 1 ? '' : 's'} (ok)`,
    )
    prompts.forEach((p, i) => {
      out(`video ${i}:`)
      p.prompts.forEach((text, j) => {
        out(`  [${j}] ${text}${p.negativePrompts[j] ? `\n      negative: ${p.negativePrompts[j]}` : ''}`)
      })
    })
    return 0
  },
}
