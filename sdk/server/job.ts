import type { RunEvent } from '../contracts/events.js'
import type { components } from './api.gen.js'
import { type JobState, ProgressTracker, TERMINAL_STATES } from './progress.js'
import type { JobRecord, JobStore } from './store.js'

export type JobStatus = components['schemas']['Job']

/**
 * One job in memory: its record (mirrored to job.json), its events in order (the SSE ids are their
 * indexes), and its progress. Events of a job that is not running here are read from events.jsonl on
 * first use.
 */
export class Job {
  private current: JobRecord
  private events: RunEvent[] | undefined
  private tracker: ProgressTracker
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
    this.tracker = new ProgressTracker(record.videos_total)
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
      this.tracker = new ProgressTracker(this.current.videos_total)
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
    const base = `/v1/jobs/${r.id}/videos`
    return {
      id: r.id,
      state: r.state,
      created_at: r.created_at,
      started_at: r.started_at,
      finished_at: r.finished_at,
      bundle: r.bundle,
      preset: r.preset,
      seed: r.seed,
      progress: this.tracker.snapshot(r.state),
      videos: this.tracker.videos().map((v) => ({
        ...v,
        url: `${base}/${v.index}`,
        preview_url: `${base}/${v.index}/preview.gif`,
        poster_url: `${base}/${v.index}/poster.png`,
        subtitles_url: `${base}/${v.index}/subtitles.vtt`,
      })),
      error: r.error,
    }
  }

  private apply(event: RunEvent): void {
    this.events!.push(event)
    this.tracker.apply(event)
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }
}
