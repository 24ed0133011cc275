import { CancelledError } from '../errors.js'
import type { Run } from '../launch/run.js'
import { err, out } from './flags.js'
import { ProgressDisplay } from './progress.js'

/**
 * Shows a run until it ends: its events as JSON lines (--json) or a live progress display, then its
 * result (`describe` says what to print). Returns the exit code; other errors propagate.
 */
export async function followRun<R>(
  run: Run<R>,
  options: { json: boolean; cancelled: () => number; describe: (result: R) => string[] | object },
): Promise<number> {
  const display = new ProgressDisplay(err, process.stderr.isTTY === true && !options.json)
  try {
    for await (const event of run) {
      if (options.json) out(JSON.stringify(event))
      else display.handle(event, run.progress())
    }
    const result = await run.result
    display.finish()
    const described = options.describe(result)
    if (options.json)
      out(
        JSON.stringify({ type: 'result', ...(Array.isArray(described) ? { lines: described } : described) }),
      )
    else if (Array.isArray(described)) for (const line of described) out(line)
    return 0
  } catch (e) {
    display.finish()
    if (!(e instanceof CancelledError)) throw e
    if (options.json) out(JSON.stringify({ type: 'error', code: e.code, message: e.message }))
    else err(e.message)
    return options.cancelled()
  }
}
