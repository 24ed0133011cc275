import { CancelledError } from '../../errors.js'
import { type ExportOptions, exportBundle } from '../../runs/export.js'
import { type Command, cancellation, out, UsageError } from '../flags.js'

const DTYPES = ['float32', 'bfloat16', 'float16'] as const

export const exportCommand: Command = {
  name: 'export',
  usage:
    'ttt-video export CHECKPOINT BUNDLE [--from-bundle BUNDLE] [--dtype float32|bfloat16|float16] [--copy] [--json]',
  flags: {
    'from-bundle': { type: 'string' },
    dtype: { type: 'string' },
    copy: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(positionals, values) {
    if (positionals.length !== 2)
      throw new UsageError(
        'export needs CHECKPOINT (<run>/checkpoints/step-<N>) and BUNDLE (the folder to write)',
      )
    const dtype = values.dtype as ExportOptions['dtype'] | undefined
    if (dtype !== undefined && !DTYPES.includes(dtype))
      throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got "${dtype}"`)
    const cancel = cancellation()
    try {
      const result = await exportBundle(positionals[0]!, positionals[1]!, {
        ...(values['from-bundle'] ? { fromBundle: values['from-bundle'] as string } : {}),
        ...(dtype ? { dtype } : {}),
        ...(values.copy ? { copy: true } : {}),
        signal: cancel.signal,
      })
      out(values.json ? JSON.stringify({ type: 'result', ...result }) : result.bundle)
      return 0
    } catch (e) {
      if (e instanceof CancelledError) return cancel.exitCode() // 130, 143 or 129, as the signal was
      throw e
    } finally {
      cancel.dispose()
    }
  },
}
