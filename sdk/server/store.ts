import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import type { ConfigObject } from '../contracts/config/index.js'
import { RunEvent } from '../contracts/events.js'
import type { Video } from '../contracts/storyboard.js'
import type { components } from './api.gen.js'
import { isJobId } from './ids.js'
import type { JobState, VideoFacts } from './progress.js'

// A job is a folder under the jobs directory, and nothing else holds its state:
//   <jobs-dir>/<id>/job.json      the small state record below (rewritten atomically on each change)
//   <jobs-dir>/<id>/request.json  the validated request (storyboards, bundle name, preset, overrides, seed)
//   <jobs-dir>/<id>/run/          the run directory of generate() (config.toml, events.jsonl, prompt-<k>/)
//   <jobs-dir>/<id>/output.log    what the Python processes printed
//   <jobs-dir>/<id>/events-<k>.jsonl  the events of attempt k of a job that was resumed

export type JobError = components['schemas']['JobError']

export interface JobRecord {
  version: 1
  id: string
  state: JobState
  created_at: string
  started_at: string | null
  finished_at: string | null
  bundle: string
  preset: string | null
  seed: number | null
  videos_total: number
  error: JobError | null
  /** Process group leader of the running job (to stop what a crashed server left behind). */
  pid: number | null
}

/** What a job runs: the request as validated, with the bundle resolved to its name. */
export interface JobInput {
  storyboards: Video[]
  bundle: string
  preset?: string
  overrides?: ConfigObject
  seed?: number
}

export class JobStore {
  readonly root: string

  constructor(root: string) {
    this.root = resolve(root)
    mkdirSync(this.root, { recursive: true })
  }

  jobDir(id: string): string {
    if (!isJobId(id)) throw new RangeError(`not a job id: ${JSON.stringify(id)}`)
    return join(this.root, id)
  }

  runDir(id: string): string {
    return join(this.jobDir(id), 'run')
  }

  logFile(id: string): string {
    return join(this.jobDir(id), 'output.log')
  }

  videoFolder(id: string, index: number): string {
    return join(this.runDir(id), `prompt-${index}`)
  }

  create(record: JobRecord, input: JobInput): void {
    const dir = this.jobDir(record.id)
    mkdirSync(dir) // throws when it exists: ids are never reused
    writeAtomic(join(dir, 'request.json'), `${JSON.stringify(input)}\n`)
    this.save(record)
  }

  save(record: JobRecord): void {
    writeAtomic(join(this.jobDir(record.id), 'job.json'), `${JSON.stringify(record, null, 2)}\n`)
  }

  readInput(id: string): JobInput {
    return JSON.parse(readFileSync(join(this.jobDir(id), 'request.json'), 'utf8')) as JobInput
  }

  /** Every job on disk; unreadable folders are reported through `onProblem` and left alone. */
  list(onProblem: (message: string) => void): JobRecord[] {
    const out: JobRecord[] = []
    for (const entry of readdirSync(this.root, { withFileTypes: true })) {
      if (!entry.isDirectory() || !isJobId(entry.name)) continue
      const file = join(this.root, entry.name, 'job.json')
      try {
        const record = JSON.parse(readFileSync(file, 'utf8')) as JobRecord
        if (record.id !== entry.name) throw new Error(`its id is ${record.id}`)
        out.push(record)
      } catch (e) {
        onProblem(`skipped ${file}: ${(e as Error).message}`)
      }
    }
    return out
  }

  /**
   * The job's events: those of earlier attempts (`events-<k>.jsonl`, moved out of the run directory
   * before a resumed run starts), then the run's events.jsonl; the valid ones, complete lines only, as
   * the run's follower reads them.
   */
  readEvents(id: string): RunEvent[] {
    const files = [...this.archivedEventFiles(id), join(this.runDir(id), 'events.jsonl')]
    return files.flatMap(readEventFile)
  }

  /**
   * Moves the run's events.jsonl aside before a resumed run starts: the new run then reports only its
   * own events (an error event of the stopped attempt must not fail it), and the job keeps them all.
   */
  archiveEvents(id: string): void {
    const current = join(this.runDir(id), 'events.jsonl')
    if (!existsSync(current)) return
    renameSync(current, join(this.jobDir(id), `events-${this.archivedEventFiles(id).length}.jsonl`))
  }

  private archivedEventFiles(id: string): string[] {
    return readdirSync(this.jobDir(id))
      .map((name) => /^events-(\d+)\.jsonl$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .sort((a, b) => Number(a[1]) - Number(b[1]))
      .map((m) => join(this.jobDir(id), m[0]))
  }

  /** The facts of a complete video (its folder has meta.json, written last), or undefined. */
  videoFacts(id: string, index: number): VideoFacts | undefined {
    try {
      const meta = JSON.parse(readFileSync(join(this.videoFolder(id, index), 'meta.json'), 'utf8')) as Record<
        string,
        unknown
      >
      const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0)
      return { index, frames: num(meta.frames), fps: num(meta.fps), seconds: num(meta.seconds) }
    } catch {
      return undefined
    }
  }

  /**
   * Claims the jobs directory for this process (`server.lock` holds its pid); fails when another live
   * process holds it. `unlock()` gives it back.
   */
  lock(): void {
    const file = join(this.root, 'server.lock')
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o600)
        writeFileSync(fd, `${process.pid}\n`)
        closeSync(fd)
        return
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
        const pid = Number(readFileSync(file, 'utf8').trim())
        if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) {
          throw new Error(
            `the jobs directory ${this.root} is in use by another server (pid ${pid}${pid === process.pid ? ', this process' : ''})`,
          )
        }
        rmSync(file, { force: true }) // left behind by a server that died
      }
    }
    throw new Error(`cannot lock the jobs directory ${this.root}`)
  }

  unlock(): void {
    const file = join(this.root, 'server.lock')
    if (existsSync(file) && readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file)
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readEventFile(file: string): RunEvent[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const lines = text.split('\n')
  lines.pop() // the part after the last newline is not a complete line yet
  const events: RunEvent[] = []
  for (const line of lines) {
    if (line.trim() === '') continue
    try {
      const parsed = RunEvent.safeParse(JSON.parse(line))
      if (parsed.success) events.push(parsed.data)
    } catch {
      // not JSON: the follower skips it too
    }
  }
  return events
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(tmp, text)
  renameSync(tmp, file)
}
