import { CancelledError } from '../errors.js'
import type { LogLine, Run } from '../launch/run.js'
import { cancellation, err, type Flags, out } from './flags.js'
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

/**
 * Starts a run and follows it as the CLI does: Ctrl-C, SIGTERM and SIGHUP cancel it, --verbose prints its
 * log lines, --json prints its events. `start` passes `hooks` on to the run's options.
 */
export async function startAndFollow<R>(
  values: Flags,
  start: (hooks: { signal: AbortSignal; onLog: (log: LogLine) => void }) => Promise<Run<R>>,
  describe: (result: R) => string[] | object,
): Promise<number> {
  const cancel = cancellation()
  try {
    const run = await start({
      signal: cancel.signal,
      onLog: ({ line }) => values.verbose === true && err(`  | ${line}`),
    })
    return await followRun(run, { json: values.json === true, cancelled: cancel.exitCode, describe })
  } finally {
    cancel.dispose()
  }
}
