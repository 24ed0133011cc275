import type { RunEvent, RunKind } from '../contracts/events.js'
import { applyEvent, emptyProgress, type RunProgress } from '../contracts/fold.js'
import { CancelledError } from '../errors.js'
import type { Run } from '../launch/run.js'

/**
 * Runs one after another as one `Run`: the events of each in order, its progress folded over all of them,
 * the result made of every run's result. A run starts only when the previous one has succeeded; a failure
 * or a cancel ends the sequence with that run's error.
 */
export function chainRuns<R, T>(
  kind: RunKind,
  runDir: string,
  starts: readonly (() => Run<R> | Promise<Run<R>>)[],
  combine: (results: R[]) => T,
): Run<T> {
  const events: RunEvent[] = []
  const progress: RunProgress = emptyProgress()
  const waiters = new Set<() => void>()
  let current: Run<R> | undefined
  let cancelled: string | undefined
  let ended = false
  const wake = () => {
    for (const w of [...waiters]) w()
  }
  const result = (async () => {
    const results: R[] = []
    try {
      for (const start of starts) {
        if (cancelled !== undefined) throw new CancelledError(`the run was cancelled (${cancelled})`, runDir)
        current = await start()
        for await (const event of current) {
          events.push(event)
          applyEvent(progress, event)
          wake()
        }
        results.push(await current.result)
      }
      return combine(results)
    } finally {
      ended = true
      wake()
    }
  })()
  result.catch(() => {})
  return {
    kind,
    runDir,
    get command() {
      return current?.command ?? []
    },
    get pid() {
      return current?.pid
    },
    result,
    progress: () => progress,
    cancel(reason = 'cancelled') {
      cancelled ??= reason
      current?.cancel(reason)
    },
    [Symbol.asyncIterator]: () => replay(events, waiters, () => ended),
  }
}

/** The events so far, then each new one as it comes, until the sequence has ended. */
async function* replay(
  events: readonly RunEvent[],
  waiters: Set<() => void>,
  ended: () => boolean,
): AsyncGenerator<RunEvent> {
  let next = 0
  for (;;) {
    while (next < events.length) yield events[next++]!
    if (ended()) return
    await new Promise<void>((resolve) => {
      const done = () => {
        waiters.delete(done)
        resolve()
      }
      waiters.add(done)
    })
  }
}
