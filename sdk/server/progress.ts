import type { RunEvent } from '../contracts/events.js'
import { applyEvent, emptyProgress, type RunProgress } from '../contracts/fold.js'
import type { components } from './api.gen.js'

export type Progress = components['schemas']['Progress']
export type JobState = components['schemas']['JobState']

/** What the status of a finished video says about it (its URLs are added by the job). */
export interface VideoFacts {
  index: number
  frames: number
  fps: number
  seconds: number
}

export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled', 'interrupted']

/** A job's progress: the run's fold (contracts/fold.ts) seen through the API's Progress schema. */
export class ProgressTracker {
  private progress: RunProgress = emptyProgress()
  private readonly found = new Map<number, VideoFacts>()

  constructor(private readonly videosTotal: number) {}

  apply(event: RunEvent): void {
    applyEvent(this.progress, event)
  }

  /** Marks videos found complete on disk (a job loaded after a restart). */
  addVideo(facts: VideoFacts): void {
    this.found.set(facts.index, facts)
  }

  videos(): VideoFacts[] {
    const all = new Map(this.found)
    for (const v of this.progress.videos.values())
      all.set(v.video, { index: v.video, frames: v.frames, fps: v.fps, seconds: v.seconds })
    return [...all.values()].sort((a, b) => a.index - b.index)
  }

  snapshot(state: JobState): Progress {
    const p = this.progress
    const ended = TERMINAL_STATES.includes(state)
    const phase =
      p.phase === 'sampling' || p.phase === 'decoding' || p.phase === 'loading' ? p.phase : 'starting'
    return {
      phase: state === 'queued' ? 'queued' : ended || p.finished ? 'finished' : phase,
      videos_total: p.total ?? this.videosTotal,
      videos_done: this.videos().length,
      current_video: ended ? null : p.currentVideo,
      step: p.step,
      total_steps: p.totalSteps,
      eta_seconds: ended ? null : p.eta,
    }
  }
}
