import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import {
  CancelledError,
  ConfigError,
  DistributedError,
  OutOfMemoryError,
  RunFailedError,
  type RunFailure,
  StoryboardError,
  type TttVideoError,
  WeightsNotFoundError,
} from '../errors.js'
import type { RunEvent } from './events.js'
import { EventFollower } from './follow.js'

export interface VideoResult {
  /** Global index of the video in the storyboards. */
  index: number
  path: string
  frames: number
  fps: number
  /** Length of the video in seconds. */
  seconds: number
  prompts: string[]
  /** The full meta.json (seed, model identity, timings per step and per window). */
  meta: Record<string, unknown>
}

export interface RunResult {
  runDir: string
  videos: VideoResult[]
  /** Wall-clock seconds of the whole run, launch to exit. */
  seconds: number
  /** Seconds each model component took to load (from the events). */
  loadSeconds: Record<string, number>
}

export interface LogLine {
  stream: 'stdout' | 'stderr'
  line: string
}

/** A running generation: an async iterable of its events, its result, and a way to stop it. */
export interface Run extends AsyncIterable<RunEvent> {
  readonly runDir: string
  /** The command line that was started. */
  readonly command: readonly string[]
  /** Process id of the launched process (the process group leader). */
  readonly pid: number | undefined
  readonly result: Promise<RunResult>
  /** Ends the whole process tree (SIGTERM, then SIGKILL after a grace period). */
  cancel(reason?: string): void
}

export interface StartRunOptions {
  command: string[]
  runDir: string
  videoCount: number
  env?: Record<string, string>
  cwd?: string
  signal?: AbortSignal
  onLog?: (log: LogLine) => void
  /** Seconds between SIGTERM and SIGKILL when cancelling (default 3). */
  killGraceSeconds?: number
}

const LOG_TAIL = 60

export function startRun(options: StartRunOptions): Run {
  const [file, ...args] = options.command as [string, ...string[]]
  const started = performance.now()
  const events: RunEvent[] = []
  const waiters = new Set<() => void>()
  let finished = false
  let cancelReason: string | undefined
  const logTail: string[] = []

  // A resumed run appends to the events of earlier attempts: follow only this attempt's events.
  const eventsFile = join(options.runDir, 'events.jsonl')
  const earlier = existsSync(eventsFile) ? statSync(eventsFile).size : 0
  const follower = new EventFollower(
    eventsFile,
    (line, problem) => {
      options.onLog?.({ stream: 'stderr', line: `ttt-video: ignored an invalid event (${problem}): ${line}` })
    },
    100,
    earlier,
  )
  const pump = (async () => {
    for await (const event of follower.events()) {
      events.push(event)
      for (const wake of waiters) wake()
    }
  })()

  // detached: the child leads a new process group, so the whole torchrun tree can be signalled at once.
  const child: ResultPromise = execa(file, args, {
    detached: true,
    reject: false,
    buffer: false,
    stdin: 'ignore',
    env: options.env ?? {},
    ...(options.cwd ? { cwd: options.cwd } : {}),
  })
  const killGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return
    try {
      process.kill(-child.pid, signal)
    } catch {
      // already gone
    }
  }
  const onExit = () => killGroup('SIGKILL')
  process.once('exit', onExit)

  for (const [stream, source] of [
    ['stdout', child.stdout],
    ['stderr', child.stderr],
  ] as const) {
    let rest = ''
    source?.setEncoding('utf8')
    source?.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n')
      rest = lines.pop() ?? ''
      for (const line of lines) {
        logTail.push(line)
        if (logTail.length > LOG_TAIL) logTail.shift()
        options.onLog?.({ stream, line })
      }
    })
  }

  const cancel = (reason = 'cancelled') => {
    if (finished || cancelReason !== undefined) return
    cancelReason = reason
    killGroup('SIGTERM')
    setTimeout(() => killGroup('SIGKILL'), (options.killGraceSeconds ?? 3) * 1000).unref()
  }
  const onAbort = () => cancel(String(options.signal?.reason ?? 'aborted'))
  if (options.signal?.aborted) onAbort()
  else options.signal?.addEventListener('abort', onAbort, { once: true })

  const result = (async (): Promise<RunResult> => {
    const outcome = await child
    // The group may still hold workers that outlive torchrun's exit: make sure nothing stays behind.
    killGroup('SIGKILL')
    follower.stop()
    await pump
    finished = true
    process.removeListener('exit', onExit)
    options.signal?.removeEventListener('abort', onAbort)
    for (const wake of waiters) wake()
    const failure: RunFailure = { logTail: [...logTail], runDir: options.runDir }
    if (cancelReason !== undefined) {
      throw new CancelledError(
        `the run was cancelled (${cancelReason}); finished videos stay in ${options.runDir}`,
        options.runDir,
      )
    }
    const error = events.find((e): e is Extract<RunEvent, { type: 'error' }> => e.type === 'error')
    if (error) throw errorFromEvent(error, failure)
    if (outcome.exitCode !== 0 || !events.some((e) => e.type === 'run.finished')) {
      const how = outcome.signal ? `was killed by ${outcome.signal}` : `exited with code ${outcome.exitCode}`
      const ErrorType =
        file.includes('torch.distributed') || args.includes('torch.distributed.run')
          ? DistributedError
          : RunFailedError
      throw new ErrorType(
        `the Python process ${how} without finishing the run; last output:\n${logTail.slice(-15).join('\n')}`,
        failure,
      )
    }
    return collectResult(options.runDir, options.videoCount, events, (performance.now() - started) / 1000)
  })()
  result.catch(() => {}) // a caller that only iterates events must not see an unhandled rejection

  return {
    runDir: options.runDir,
    command: options.command,
    pid: child.pid,
    result,
    cancel,
    async *[Symbol.asyncIterator]() {
      let next = 0
      for (;;) {
        while (next < events.length) yield events[next++]!
        if (finished) return
        await new Promise<void>((resolve) => {
          const wake = () => {
            waiters.delete(wake)
            resolve()
          }
          waiters.add(wake)
        })
      }
    },
  }
}

function errorFromEvent(event: Extract<RunEvent, { type: 'error' }>, failure: RunFailure): TttVideoError {
  const details: RunFailure = {
    ...failure,
    pythonCode: event.code,
    ...(event.hint ? { hint: event.hint } : {}),
    ...(event.traceback ? { traceback: event.traceback } : {}),
  }
  switch (event.code) {
    case 'CONFIG':
      return new ConfigError([{ path: '', message: event.message }])
    case 'STORYBOARD':
      return new StoryboardError([{ path: '', message: event.message }])
    case 'WEIGHTS_MISSING':
      return new WeightsNotFoundError(event.message, details)
    case 'OUT_OF_MEMORY':
      return new OutOfMemoryError(event.message, details)
    case 'DISTRIBUTED':
      return new DistributedError(event.message, details)
    case 'CANCELLED':
      return new CancelledError(event.message, failure.runDir)
    default:
      return new RunFailedError(`${event.message}${event.traceback ? `\n${event.traceback}` : ''}`, details)
  }
}

function collectResult(runDir: string, videoCount: number, events: RunEvent[], seconds: number): RunResult {
  const videos: VideoResult[] = []
  for (let index = 0; index < videoCount; index++) {
    const metaFile = join(runDir, `prompt-${index}`, 'meta.json')
    if (!existsSync(metaFile)) continue
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as Record<string, unknown>
    videos.push({
      index,
      path: join(runDir, `prompt-${index}`, 'video.mp4'),
      frames: meta.frames as number,
      fps: meta.fps as number,
      seconds: meta.seconds as number,
      prompts: meta.prompts as string[],
      meta,
    })
  }
  const loadSeconds: Record<string, number> = {}
  for (const e of events) if (e.type === 'model.loaded') loadSeconds[e.component] = e.seconds
  return { runDir, videos, seconds: Math.round(seconds * 1000) / 1000, loadSeconds }
}
