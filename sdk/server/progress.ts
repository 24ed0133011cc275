import type { RunEvent } from '../launch/events.js'
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

/** Folds a job's events into its progress, one event at a time (O(1) each). */
export class ProgressTracker {
  private phase: Progress['phase'] = 'starting'
  private videosTotal: number
  private readonly done = new Map<number, VideoFacts>()
  private readonly written = new Map<number, VideoFacts>()
  private currentVideo: number | null = null
  private step: number | null = null
  private totalSteps: number | null = null
  private eta: number | null = null

  constructor(videosTotal: number) {
    this.videosTotal = videosTotal
  }

  /**
   * `readMeta(k)` gives the facts of a video found complete on disk (`prompt.skipped` of a resumed run).
   */
  apply(event: RunEvent, readMeta: (index: number) => VideoFacts | undefined): void {
    switch (event.type) {
      case 'run.started':
        this.phase = 'starting'
        this.videosTotal = event.videos
        break
      case 'model.loading':
      case 'model.loaded':
        this.phase = 'loading'
        break
      case 'prompt.started':
        this.phase = 'sampling'
        this.currentVideo = event.video
        this.step = 0
        this.totalSteps = null
        this.eta = null
        break
      case 'step':
        this.phase = 'sampling'
        this.currentVideo = event.video
        this.step = event.index + 1
        this.totalSteps = event.total
        this.eta = event.eta
        break
      case 'decode.window':
        this.phase = 'decoding'
        this.eta = null
        break
      case 'video.written':
        this.written.set(event.video, {
          index: event.video,
          frames: event.frames,
          fps: event.fps,
          seconds: event.seconds,
        })
        break
      case 'prompt.finished': {
        const facts = this.written.get(event.video) ?? readMeta(event.video)
        if (facts) this.done.set(event.video, facts)
        break
      }
      case 'prompt.skipped': {
        const facts = readMeta(event.video)
        if (facts) this.done.set(event.video, facts)
        break
      }
      case 'run.finished':
        this.phase = 'finished'
        this.currentVideo = null
        this.eta = null
        break
      case 'error':
        break
    }
  }

  /** Marks videos found complete on disk (a job loaded after a restart). */
  addVideo(facts: VideoFacts): void {
    this.done.set(facts.index, facts)
  }

  videos(): VideoFacts[] {
    return [...this.done.values()].sort((a, b) => a.index - b.index)
  }

  snapshot(state: JobState): Progress {
    const ended = TERMINAL_STATES.includes(state)
    return {
      phase: state === 'queued' ? 'queued' : ended ? 'finished' : this.phase,
      videos_total: this.videosTotal,
      videos_done: this.done.size,
      current_video: ended ? null : this.currentVideo,
      step: this.step,
      total_steps: this.totalSteps,
      eta_seconds: ended ? null : this.eta,
    }
  }
}
