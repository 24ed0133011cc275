import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { RunEvent, RunKind } from '../contracts/events.js'
import { applyEvent, emptyProgress, type RunProgress } from '../contracts/fold.js'
import { RUN_FILES } from '../contracts/run-dir.js'
import { CancelledError, DistributedError, RunFailedError, type RunFailure } from '../errors.js'
import { errorFromEvent } from './errors.js'
import { EventFollower } from './follow.js'
import { type ProcessGroup, spawnGroup } from './process-group.js'

// A run of any kind (sample, train, prepare, convert): a command in its own process group, its events
// followed from the run directory and folded into progress, its outcome turned into a typed result or
// a typed error. The kind-specific part is `collect`, which builds the result.

export interface LogLine {
  stream: 'stdout' | 'stderr'
  line: string
}

/** A running job: an async iterable of its events, its progress, its result, and a way to stop it. */
export interface Run<R> extends AsyncIterable<RunEvent> {
  readonly kind: RunKind
  readonly runDir: string
  /** The command line that was started. */
  readonly command: readonly string[]
  /** Process id of the launched process (the process group leader). */
  readonly pid: number | undefined
  readonly result: Promise<R>
  /** The progress so far (the fold of the events seen). */
  progress(): RunProgress
  /** Ends the whole process tree (SIGTERM, then SIGKILL after a grace period). */
  cancel(reason?: string): void
}

export interface RunSpec<R> {
  kind: RunKind
  command: readonly string[]
  runDir: string
  /** The result of a run that finished well, from its progress and run directory. */
  collect: (progress: RunProgress, runDir: string, seconds: number) => R
  env?: Record<string, string>
  cwd?: string
  signal?: AbortSignal
  onLog?: (log: LogLine) => void
  /** Seconds between SIGTERM and SIGKILL when cancelling (default 3). */
  killGraceSeconds?: number
  /** Called when the run is cancelled, before its process group is ended (e.g. scancel of a Slurm job). */
  onCancel?: () => Promise<void>
  /** A line of events.jsonl that is not a valid event fails the run (default: $TTT_VIDEO_STRICT_EVENTS). */
  strictEvents?: boolean
}

const LOG_TAIL = 60

/** Collects the last lines of both output streams and passes each line on. */
function captureLogs(group: ProcessGroup, onLog: ((log: LogLine) => void) | undefined): string[] {
  const tail: string[] = []
  for (const stream of ['stdout', 'stderr'] as const) {
    const source = group.child[stream]
    let rest = ''
    source?.setEncoding('utf8')
    source?.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n')
      rest = lines.pop() ?? ''
      for (const line of lines) {
        tail.push(line)
        if (tail.length > LOG_TAIL) tail.shift()
        onLog?.({ stream, line })
      }
    })
  }
  return tail
}

/** Broadcasts new events to any number of iterators; each sees every event from the start. */
class EventLog {
  readonly events: RunEvent[] = []
  private readonly waiters = new Set<() => void>()
  ended = false

  push(event: RunEvent): void {
    this.events.push(event)
    this.wakeAll()
  }

  end(): void {
    this.ended = true
    this.wakeAll()
  }

  async *iterate(): AsyncGenerator<RunEvent> {
    let next = 0
    for (;;) {
      while (next < this.events.length) yield this.events[next++]!
      if (this.ended) return
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake)
          resolve()
        }
        this.waiters.add(wake)
      })
    }
  }

  private wakeAll(): void {
    for (const wake of [...this.waiters]) wake()
  }
}

/** Follows the run's events.jsonl (from its size now: a resumed run appends) into the log and the fold. */
function followEvents(spec: RunSpec<unknown>, progress: RunProgress, log: EventLog) {
  const invalid: string[] = []
  const eventsFile = join(spec.runDir, RUN_FILES.events)
  const follower = new EventFollower(
    eventsFile,
    (line, problem) => {
      invalid.push(`${problem}: ${line}`)
      spec.onLog?.({ stream: 'stderr', line: `ttt-video: an invalid event (${problem}): ${line}` })
    },
    100,
    existsSync(eventsFile) ? statSync(eventsFile).size : 0,
  )
  const pump = (async () => {
    for await (const event of follower.events()) {
      applyEvent(progress, event)
      log.push(event)
    }
  })()
  const stop = async () => {
    follower.stop()
    await pump
  }
  return { invalid, stop }
}

interface Ending {
  exitCode: number | undefined
  signal: string | undefined
  cancelReason: string | undefined
  invalid: string[]
  logTail: string[]
}

/** The typed error of a run that did not finish well, or undefined. */
function failureOf(spec: RunSpec<unknown>, progress: RunProgress, end: Ending): Error | undefined {
  const failure: RunFailure = { logTail: [...end.logTail], runDir: spec.runDir }
  if (end.cancelReason !== undefined)
    return new CancelledError(
      `the run was cancelled (${end.cancelReason}); its results so far stay in ${spec.runDir}`,
      spec.runDir,
    )
  if (progress.error) return errorFromEvent(progress.error, failure)
  const strict = spec.strictEvents ?? process.env.TTT_VIDEO_STRICT_EVENTS === '1'
  if (strict && end.invalid.length > 0)
    return new RunFailedError(
      `the run wrote ${end.invalid.length} invalid event(s); the first: ${end.invalid[0]}`,
      failure,
    )
  if (end.exitCode === 0 && progress.finished) return undefined
  const how = end.signal ? `was killed by ${end.signal}` : `exited with code ${end.exitCode}`
  const ErrorType = spec.command.includes('torchrun') ? DistributedError : RunFailedError
  return new ErrorType(
    `the Python process ${how} without finishing the run; last output:\n${end.logTail.slice(-15).join('\n')}`,
    failure,
  )
}

export function startRun<R>(spec: RunSpec<R>): Run<R> {
  const started = performance.now()
  const log = new EventLog()
  const progress = emptyProgress()
  const events = followEvents(spec, progress, log)
  const group = spawnGroup(spec.command, {
    ...(spec.env ? { env: spec.env } : {}),
    ...(spec.cwd ? { cwd: spec.cwd } : {}),
  })
  const logTail = captureLogs(group, spec.onLog)
  let cancelReason: string | undefined
  const cancel = (reason = 'cancelled') => {
    if (log.ended || cancelReason !== undefined) return
    cancelReason = reason
    const terminate = () => group.terminate(spec.killGraceSeconds ?? 3)
    if (spec.onCancel) void spec.onCancel().finally(terminate)
    else terminate()
  }
  const onAbort = () => cancel(String(spec.signal?.reason ?? 'aborted'))
  if (spec.signal?.aborted) onAbort()
  else spec.signal?.addEventListener('abort', onAbort, { once: true })

  const result = (async (): Promise<R> => {
    const outcome = await group.child
    // The group may still hold workers that outlive the leader's exit: make sure nothing stays behind.
    group.kill('SIGKILL')
    group.release()
    await events.stop()
    log.end()
    spec.signal?.removeEventListener('abort', onAbort)
    const end = {
      exitCode: outcome.exitCode,
      signal: outcome.signal,
      cancelReason,
      invalid: events.invalid,
      logTail,
    }
    const error = failureOf(spec, progress, end)
    if (error) throw error
    return spec.collect(progress, spec.runDir, Math.round(performance.now() - started) / 1000)
  })()
  result.catch(() => {}) // a caller that only iterates events must not see an unhandled rejection

  return {
    kind: spec.kind,
    runDir: spec.runDir,
    command: spec.command,
    pid: group.pid,
    result,
    progress: () => progress,
    cancel,
    [Symbol.asyncIterator]: () => log.iterate(),
  }
}
