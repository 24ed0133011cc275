import { dirname } from 'node:path'
import { subtitles } from '../../video/index.js'
import { type Command, out, UsageError } from '../flags.js'

export const subtitlesCommand: Command = {
  name: 'subtitles',
  usage: 'ttt-video subtitles RUN/video-K [--format vtt|srt] [--mux]',
  flags: { format: { type: 'string' }, mux: { type: 'boolean' } },
  async run(positionals, values) {
    if (positionals.length !== 1)
      throw new UsageError('subtitles needs one video folder of a run (video-<k>/) or its video.mp4')
    const format = (values.format as string | undefined) ?? 'vtt'
    if (format !== 'vtt' && format !== 'srt') throw new UsageError('--format must be vtt or srt')
    const folder = positionals[0]!.endsWith('.mp4') ? dirname(positionals[0]!) : positionals[0]!
    const result = await subtitles(folder, { format, mux: values.mux === true })
    out(result.path ?? result.text)
    if (result.muxed) out(result.muxed)
    return 0
  },
}
