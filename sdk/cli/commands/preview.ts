import { preview } from '../../video/index.js'
import { type Command, out, UsageError } from '../flags.js'

export const previewCommand: Command = {
  name: 'preview',
  usage: 'ttt-video preview FILE [--format gif|webm] [--width W] [--out FILE]',
  flags: { format: { type: 'string' }, width: { type: 'string' }, out: { type: 'string' } },
  async run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('preview needs one FILE')
    const format = (values.format as string | undefined) ?? 'gif'
    if (format !== 'gif' && format !== 'webm') throw new UsageError('--format must be gif or webm')
    const width = values.width === undefined ? undefined : Number(values.width)
    if (width !== undefined && !(Number.isInteger(width) && width >= 1))
      throw new UsageError(`--width must be a positive integer (pixels), got "${values.width}"`)
    out(
      await preview(positionals[0]!, {
        format,
        ...(width !== undefined ? { width } : {}),
        ...(values.out ? { out: values.out as string } : {}),
      }),
    )
    return 0
  },
}
