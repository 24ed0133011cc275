import type { RunEvent } from '../contracts/events.js'
import { applyEvent, emptyProgress, type RunProgress } from '../contracts/fold.js'
import type { components } from './api.gen.js'
import { type JobState, progressView, TERMINAL_STATES, videoSummaries } from './progress.js'
import type { JobRecord, JobStore } from './store.js'

export type JobStatus = components['schemas']['Job']

/**
 * One job in memory: its record (mirrored to job.json), its events in order (the SSE ids are their
 * indexes), and their fold. Events of a job that is not running here are read from disk on first use.
 */
export class Job {
  private current: JobRecord
  private events: RunEvent[] | undefined
  private progress: RunProgress = emptyProgress()
  private readonly listeners = new Set<() => void>()
  /** Set while the job runs here. */
  controller: AbortController | undefined
  /** Why the running job is being stopped. */
  stopReason: 'cancel' | 'shutdown' | undefined

  constructor(
    record: JobRecord,
    private readonly store: JobStore,
  ) {
    this.current = record
  }

  get id(): string {
    return this.current.id
  }

  get record(): Readonly<JobRecord> {
    return this.current
  }

  get state(): JobState {
    return this.current.state
  }

  get ended(): boolean {
    return TERMINAL_STATES.includes(this.current.state)
  }

  /** Changes the record, writes job.json, and wakes the event streams. */
  update(patch: Partial<JobRecord>): void {
    this.current = { ...this.current, ...patch }
    this.store.save(this.current)
    this.notify()
  }

  /** The events so far (read from disk the first time for a job that is not running here). */
  allEvents(): readonly RunEvent[] {
    if (this.events === undefined) {
      this.events = []
      this.progress = emptyProgress()
      for (const event of this.store.readEvents(this.id)) this.apply(event)
    }
    return this.events
  }

  /** Appends an event of the live run. */
  push(event: RunEvent): void {
    this.allEvents()
    this.apply(event)
    this.notify()
  }

  /** Calls `listener` after each new event and each state change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  toJson(): JobStatus {
    this.allEvents()
    const r = this.current
    return {
      id: r.id,
      state: r.state,
      created_at: r.created_at,
      started_at: r.started_at,
      resumed_at: r.resumed_at,
      finished_at: r.finished_at,
      bundle: r.bundle,
      preset: r.preset,
      seed: r.seed,
      progress: progressView(this.progress, r.state, r.videos_total),
      videos: videoSummaries(this.progress, r.id),
      error: r.error,
    }
  }

  private apply(event: RunEvent): void {
    this.events!.push(event)
    applyEvent(this.progress, event)
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }
}
