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
import * as z from 'zod'
import type { ConfigObject } from '../contracts/config/index.js'
import { RunEvent } from '../contracts/events.js'
import { RUN_FILES, videoDir } from '../contracts/run-dir.js'
import type { Video } from '../contracts/storyboard.js'
import { isJobId } from './ids.js'
import { JOB_STATES } from './progress.js'
import { JOB_ID_PATTERN } from './schemas.js'

// A job is a folder under the jobs directory, and nothing else holds its state:
//   <jobs-dir>/<id>/job.json      the small state record below (rewritten atomically on each change)
//   <jobs-dir>/<id>/request.json  the validated request (storyboards, bundle name, preset, overrides, seed)
//   <jobs-dir>/<id>/run/          the run directory of generate() (config.toml, events.jsonl, video-<k>/)
//   <jobs-dir>/<id>/output.log    what the Python processes printed
//   <jobs-dir>/<id>/events-<k>.jsonl  the events of attempt k of a job that was resumed
// A deleted job is first renamed to `.deleted-<id>` (not a job id: never listed), then removed.

const time = z.iso.datetime()

/** job.json. */
export const JobRecord = z.object({
  version: z.literal(2),
  id: z.string().regex(JOB_ID_PATTERN),
  state: z.enum(JOB_STATES),
  created_at: time,
  /** When the job first started; a resumed job keeps it. */
  started_at: time.nullable(),
  /** When the job last started again after an interruption (`--resume`); null if it never was. */
  resumed_at: time.nullable(),
  finished_at: time.nullable(),
  bundle: z.string(),
  preset: z.string().nullable(),
  /** The base seed the job runs with: the request's, else the resolved config's job.seed. */
  seed: z.int(),
  videos_total: z.int().min(1),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  /** Process group leader of the running job (to stop what a crashed server left behind). */
  pid: z.int().nullable(),
})
export type JobRecord = z.infer<typeof JobRecord>
export type JobError = NonNullable<JobRecord['error']>

/** What a job runs: the request as validated, with the bundle resolved to its name and the seed to a number. */
export interface JobInput {
  storyboards: Video[]
  bundle: string
  preset?: string
  overrides?: ConfigObject
  seed: number
}

export class JobStore {
  readonly root: string

  constructor(root: string) {
    this.root = resolve(root) // made by lock(): nothing is written before the server starts
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
    return videoDir(this.runDir(id), index)
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
        const parsed = JobRecord.safeParse(JSON.parse(readFileSync(file, 'utf8')))
        if (!parsed.success) throw new Error(z.prettifyError(parsed.error).replace(/\n/g, '; '))
        if (parsed.data.id !== entry.name) throw new Error(`its id is ${parsed.data.id}`)
        out.push(parsed.data)
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
    const files = [...this.archivedEventFiles(id), join(this.runDir(id), RUN_FILES.events)]
    return files.flatMap(readEventFile)
  }

  /**
   * Moves the run's events.jsonl aside before a resumed run starts: the new run then reports only its
   * own events (an error event of the stopped attempt must not fail it), and the job keeps them all.
   */
  archiveEvents(id: string): void {
    const current = join(this.runDir(id), RUN_FILES.events)
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

  /**
   * Deletes a job's folder: renamed first (so that a crash halfway leaves no half job that looks whole),
   * then removed.
   */
  remove(id: string): void {
    const doomed = join(this.root, `.deleted-${id}`)
    renameSync(this.jobDir(id), doomed)
    rmSync(doomed, { recursive: true, force: true })
  }

  /** Removes what deletions interrupted by a crash left behind. */
  removeLeftovers(): void {
    for (const name of readdirSync(this.root)) {
      if (name.startsWith('.deleted-')) rmSync(join(this.root, name), { recursive: true, force: true })
    }
  }

  /**
   * Claims the jobs directory for this process (`server.lock` holds its pid), making it if need be; fails
   * when another live process holds it. `unlock()` gives it back.
   */
  lock(): void {
    mkdirSync(this.root, { recursive: true })
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
