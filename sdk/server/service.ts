import { createWriteStream, readFileSync } from 'node:fs'
import { setPriority } from 'node:os'
import { CancelledError, TttVideoError } from '../errors.js'
import { generate } from '../runs/generate.js'
import { newJobId } from './ids.js'
import { Job } from './job.js'
import { HttpError, notFound } from './problem.js'
import type { JobState } from './progress.js'
import { type JobRecord, JobStore, processAlive } from './store.js'
import { generateOptions, type Limits, type Slot, validateRequest } from './validate.js'

export interface JobServiceOptions {
  jobsDir: string
  bundles: Readonly<Record<string, string>>
  defaultBundle: string
  slots: Slot[]
  limits: Limits
  maxQueued: number
  /** Run again the jobs a stopped server left `running` or `interrupted` (default: mark them interrupted). */
  resume: boolean
  venvDir: string | undefined
  /** Niceness of the job processes (0: as the server's); they then leave the CPU to the HTTP side first. */
  jobNice: number
  onLog: (message: string) => void
}

/**
 * The jobs and their queue: jobs start in submission order, one per free slot (a slot is a GPU set, or
 * one CPU process group). All state is on disk (JobStore); this keeps the live view.
 */
export class JobService {
  readonly store: JobStore
  private readonly jobs = new Map<string, Job>()
  private readonly pending: Job[] = []
  private readonly freeSlots: Slot[]
  private readonly running = new Map<Job, Promise<void>>()
  private closing = false

  constructor(private readonly options: JobServiceOptions) {
    this.store = new JobStore(options.jobsDir)
    this.freeSlots = [...options.slots]
  }

  /** Loads the jobs on disk; queued ones are queued again, interrupted ones marked (or re-queued). */
  load(): void {
    const records = this.store.list(this.options.onLog)
    records.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id))
    for (const record of records) {
      const job = new Job(record, this.store)
      this.jobs.set(job.id, job)
      if (record.state === 'running') {
        // The server that ran it is gone; its processes may not be.
        if (record.pid !== null) stopOrphan(record.pid, this.options.onLog)
        job.update({ state: 'interrupted', finished_at: new Date().toISOString(), pid: null })
      }
      if (job.state === 'queued' || (job.state === 'interrupted' && this.options.resume)) {
        if (job.state === 'interrupted') job.update({ state: 'queued', finished_at: null })
        this.pending.push(job)
      }
    }
    this.schedule()
  }

  get concurrency(): number {
    return this.options.slots.length
  }

  counts(): { queued: number; running: number } {
    return { queued: this.pending.length, running: this.running.size }
  }

  /** Validates a request body in full and queues it. */
  async submit(body: unknown): Promise<Job> {
    if (this.closing) throw new HttpError(503, 'shutting-down', 'the server is shutting down')
    if (this.pending.length >= this.options.maxQueued) {
      throw new HttpError(503, 'queue-full', `${this.pending.length} jobs are waiting; try again later`, {
        headers: { 'Retry-After': '30' },
      })
    }
    const input = await validateRequest(body, {
      bundles: this.options.bundles,
      defaultBundle: this.options.defaultBundle,
      limits: this.options.limits,
      venvDir: this.options.venvDir,
      slot: this.options.slots[0]!,
    })
    const now = new Date()
    const record: JobRecord = {
      version: 1,
      id: newJobId(now),
      state: 'queued',
      created_at: now.toISOString(),
      started_at: null,
      finished_at: null,
      bundle: input.bundle,
      preset: input.preset ?? null,
      seed: input.seed ?? null,
      videos_total: input.storyboards.length,
      error: null,
      pid: null,
    }
    this.store.create(record, input)
    const job = new Job(record, this.store)
    this.jobs.set(job.id, job)
    this.pending.push(job)
    this.schedule()
    return job
  }

  get(id: string): Job {
    const job = this.jobs.get(id)
    if (!job) throw notFound(`no job ${id}`)
    return job
  }

  /** Newest first. */
  list(state?: JobState, limit = 100): Job[] {
    const all = [...this.jobs.values()].filter((j) => state === undefined || j.state === state)
    all.sort((a, b) => b.record.created_at.localeCompare(a.record.created_at) || b.id.localeCompare(a.id))
    return all.slice(0, limit)
  }

  cancel(id: string): Job {
    const job = this.get(id)
    if (job.ended) throw new HttpError(409, 'job-ended', `job ${id} has already ended (${job.state})`)
    const queued = this.pending.indexOf(job)
    if (queued >= 0) {
      this.pending.splice(queued, 1)
      job.update({ state: 'cancelled', finished_at: new Date().toISOString() })
    } else if (job.controller && job.stopReason === undefined) {
      job.stopReason = 'cancel'
      job.controller.abort('cancelled through the HTTP API')
    }
    return job
  }

  /** Stops taking jobs, stops the running ones (they become `interrupted`) and waits for them. */
  async close(): Promise<void> {
    this.closing = true
    for (const job of this.running.keys()) {
      if (job.stopReason === undefined) job.stopReason = 'shutdown'
      job.controller?.abort('the server is shutting down')
    }
    await Promise.all(this.running.values())
  }

  private schedule(): void {
    while (!this.closing && this.freeSlots.length > 0 && this.pending.length > 0) {
      const job = this.pending.shift()!
      const slot = this.freeSlots.shift()!
      const done = this.execute(job, slot).finally(() => {
        this.running.delete(job)
        this.freeSlots.push(slot)
        this.freeSlots.sort((a, b) => a.index - b.index)
        this.schedule()
      })
      this.running.set(job, done)
    }
  }

  private async execute(job: Job, slot: Slot): Promise<void> {
    const controller = new AbortController()
    job.controller = controller
    job.stopReason = undefined
    job.allEvents() // loaded before the run starts: from now on they come from the run
    this.store.archiveEvents(job.id)
    job.update({ state: 'running', started_at: new Date().toISOString(), finished_at: null, error: null })
    const log = createWriteStream(this.store.logFile(job.id), { flags: 'a' })
    log.on('error', () => {})
    let outcome: Partial<JobRecord>
    try {
      const input = this.store.readInput(job.id)
      const bundlePath = this.options.bundles[input.bundle]
      if (bundlePath === undefined)
        throw new TttVideoError('CONFIG', `bundle "${input.bundle}" is not configured on this server`)
      const run = await generate(input.storyboards, {
        ...generateOptions(input, bundlePath, slot, this.options.venvDir),
        runDir: this.store.runDir(job.id),
        signal: controller.signal,
        onLog: ({ stream, line }) => log.write(`${stream}: ${line}\n`),
        onNotice: (message) => log.write(`note: ${message}\n`),
      })
      if (run.pid !== undefined && this.options.jobNice > 0) lowerPriority(run.pid, this.options.jobNice)
      job.update({ pid: run.pid ?? null })
      for await (const event of run) job.push(event)
      await run.result
      outcome = { state: 'succeeded' }
    } catch (e) {
      if (job.stopReason === 'shutdown') outcome = { state: 'interrupted' }
      else if (job.stopReason === 'cancel' || e instanceof CancelledError) outcome = { state: 'cancelled' }
      else {
        const code = e instanceof TttVideoError ? e.code : 'INTERNAL'
        outcome = { state: 'failed', error: { code, message: (e as Error).message } }
        this.options.onLog(`job ${job.id} failed: ${(e as Error).message.split('\n')[0]}`)
      }
    } finally {
      await new Promise<void>((resolve) => log.end(resolve))
      job.controller = undefined
    }
    job.update({ ...outcome, pid: null, finished_at: new Date().toISOString() })
  }
}

/**
 * Lowers the priority of a job's process as soon as it starts: the threads and processes it makes later
 * (torch's thread pool, torchrun's workers) inherit it.
 */
function lowerPriority(pid: number, nice: number): void {
  try {
    setPriority(pid, nice)
  } catch {
    // gone already, or not allowed: the job runs at the server's priority
  }
}

/** Kills the process group a crashed server left running, when it still looks like ours. */
function stopOrphan(pid: number, onLog: (message: string) => void): void {
  if (!processAlive(pid)) return
  let cmdline = ''
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {}
  if (!cmdline.includes('ttt_video') && !cmdline.includes('torch.distributed.run')) return
  try {
    process.kill(-pid, 'SIGKILL')
    onLog(`stopped the processes (group ${pid}) of a job a previous server left running`)
  } catch {}
}
