import { newJobId } from './ids.js'
import { Job } from './job.js'
import { HttpError } from './problem.js'
import type { JobState } from './progress.js'
import { jobsToRemove, type Retention } from './retention.js'
import { runJob, stopOrphan } from './runner.js'
import { type JobRecord, JobStore } from './store.js'
import { type Limits, type Slot, validateRequest } from './validate.js'

export interface JobServiceOptions {
  jobsDir: string
  bundles: Readonly<Record<string, string>>
  defaultBundle: string
  slots: Slot[]
  limits: Limits
  maxQueued: number
  /** Run again the jobs a stopped server left `running` or `interrupted` (default: mark them interrupted). */
  resume: boolean
  /** Which ended jobs are deleted on their own (at start and after each job ends). */
  retention: Retention
  venvDir: string | undefined
  /** Niceness of the job processes (0: as the server's); they then leave the CPU to the HTTP side first. */
  jobNice: number
  onLog: (message: string) => void
}

export const jobNotFound = (id: string) => new HttpError(404, 'job-not-found', `no job ${id}`)

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
  private started = false

  constructor(private readonly options: JobServiceOptions) {
    this.store = new JobStore(options.jobsDir)
    this.freeSlots = [...options.slots]
  }

  /**
   * Loads the jobs on disk (queued ones are queued again, interrupted ones marked or re-queued) and
   * applies the retention. Nothing runs before `start()`.
   */
  load(): void {
    this.jobs.clear()
    this.pending.length = 0
    this.store.removeLeftovers()
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
    this.applyRetention()
  }

  /** Starts the queue. */
  start(): void {
    this.started = true
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
    const input = await validateRequest(body, { ...this.options, slot: this.options.slots[0]! })
    const now = new Date()
    const record: JobRecord = {
      version: 2,
      id: newJobId(now),
      state: 'queued',
      created_at: now.toISOString(),
      started_at: null,
      resumed_at: null,
      finished_at: null,
      bundle: input.bundle,
      preset: input.preset ?? null,
      seed: input.seed,
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
    if (!job) throw jobNotFound(id)
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
      this.applyRetention()
    } else if (job.controller && job.stopReason === undefined) {
      job.stopReason = 'cancel'
      job.controller.abort('cancelled through the HTTP API')
    }
    return job
  }

  /** Deletes an ended job and its folder; a queued or running one is a 409 (cancel it first). */
  delete(id: string): void {
    const job = this.get(id)
    if (!job.ended)
      throw new HttpError(
        409,
        'job-not-ended',
        `job ${id} is ${job.state}; cancel it first (POST /v1/jobs/${id}/cancel) and delete it once it has ended`,
      )
    this.jobs.delete(id)
    this.store.remove(id)
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

  /** Deletes the ended jobs beyond the retention (none while shutting down: those are being interrupted). */
  private applyRetention(): void {
    if (this.closing) return
    const records = [...this.jobs.values()].map((j) => j.record)
    for (const id of jobsToRemove(records, this.options.retention, new Date())) {
      try {
        this.delete(id)
        this.options.onLog(`deleted job ${id} (beyond the retention: --keep-jobs / --keep-days)`)
      } catch (e) {
        this.options.onLog(`could not delete job ${id}: ${(e as Error).message}`)
      }
    }
  }

  private schedule(): void {
    while (this.started && !this.closing && this.freeSlots.length > 0 && this.pending.length > 0) {
      const job = this.pending.shift()!
      const slot = this.freeSlots.shift()!
      const done = runJob(job, slot, { ...this.options, store: this.store }).finally(() => {
        this.running.delete(job)
        this.freeSlots.push(slot)
        this.freeSlots.sort((a, b) => a.index - b.index)
        this.applyRetention()
        this.schedule()
      })
      this.running.set(job, done)
    }
  }
}
