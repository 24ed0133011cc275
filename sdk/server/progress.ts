import type { RunProgress } from '../contracts/fold.js'
import type { components } from './api.gen.js'

// A job's progress as the API shows it: a view of the run's fold (sdk/contracts/fold.ts), which is the one
// place that turns events into progress. Nothing here reads events.

export type Progress = components['schemas']['Progress']
export type JobState = components['schemas']['JobState']
export type VideoSummary = components['schemas']['VideoSummary']

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'] as const
export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled', 'interrupted']

// the API's JobState and this list are the same set
const _sameStates: [JobState] extends [(typeof JOB_STATES)[number]] ? true : never = true
void _sameStates

const RUN_PHASES = ['loading', 'sampling', 'decoding'] as const satisfies readonly Progress['phase'][]

/** The Progress of a job in `state` whose events folded into `p`. */
export function progressView(p: RunProgress, state: JobState, videosTotal: number): Progress {
  const ended = TERMINAL_STATES.includes(state)
  const running = (RUN_PHASES as readonly string[]).includes(p.phase)
    ? (p.phase as Progress['phase'])
    : 'starting'
  return {
    phase: state === 'queued' ? 'queued' : ended || p.finished ? 'finished' : running,
    videos_total: p.total ?? videosTotal,
    videos_done: p.videos.size,
    current_video: ended ? null : p.currentVideo,
    step: p.step,
    total_steps: p.totalSteps,
    eta_seconds: ended ? null : p.eta,
  }
}

/** The finished videos (written, or found complete and skipped) with their URLs, by index. */
export function videoSummaries(p: RunProgress, jobId: string): VideoSummary[] {
  const base = `/v1/jobs/${jobId}/videos`
  return [...p.videos.values()]
    .sort((a, b) => a.video - b.video)
    .map((v) => ({
      index: v.video,
      frames: v.frames,
      fps: v.fps,
      seconds: v.seconds,
      url: `${base}/${v.video}`,
      preview_url: `${base}/${v.video}/preview.gif`,
      poster_url: `${base}/${v.video}/poster.png`,
      subtitles_url: `${base}/${v.video}/subtitles.vtt`,
    }))
}
