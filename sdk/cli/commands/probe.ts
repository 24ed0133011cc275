import { probe } from '../../video/index.js'
import { type Command, err, out, UsageError } from '../flags.js'

export const probeCommand: Command = {
  name: 'probe',
  usage: 'ttt-video probe FILE [--json]',
  flags: { json: { type: 'boolean' } },
  async run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('probe needs one FILE')
    const info = await probe(positionals[0]!)
    out(
      values.json
        ? JSON.stringify(info, null, 2)
        : `${info.file}: ${info.codec} ${info.width}x${info.height} ${info.pixelFormat}, ${info.frames} frames at ${info.fps} fps (${info.duration.toFixed(3)} s)`,
    )
    for (const warning of info.warnings) err(`warning: ${warning}`)
    return info.warnings.length ? 1 : 0
  },
}
