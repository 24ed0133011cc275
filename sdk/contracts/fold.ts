import type { EventOf, RunEvent, RunKind } from './events.js'

// Events -> progress, once: the CLI's live line, the server's job status and a Run's result all read
// the same fold.

export type Phase =
  | 'starting'
  | 'loading'
  | 'sampling'
  | 'decoding'
  | 'training'
  | 'preparing'
  | 'converting'
  | 'finished'

export interface FinishedVideo {
  video: number
  frames: number
  fps: number
  seconds: number
  /** The mp4, when the event said (a skipped video's path is known from the run directory). */
  path?: string
  skipped: boolean
}

export interface TrainingProgress {
  stage: string | null
  step: number
  steps: number
  loss: number | null
  lr: Record<string, number>
  gradNorm: number | null
  tokensPerSecond: number
  secondsPerStep: number
  lastCheckpoint: string | null
}

export interface RunProgress {
  kind: RunKind | undefined
  phase: Phase
  /** Work items of the run (videos, clips, steps, tensors), once the run has said. */
  total: number | null
  /** Items done (videos written or skipped, clips encoded or skipped, steps, tensors). */
  done: number
  /** Finished videos by index (sampling). */
  videos: Map<number, FinishedVideo>
  currentVideo: number | null
  /** 1-based step of the current loop (sampling steps of a video, optimiser steps). */
  step: number | null
  totalSteps: number | null
  /** Seconds left in the current loop, when known. */
  eta: number | null
  loadSeconds: Record<string, number>
  warnings: string[]
  training: TrainingProgress | null
  error: EventOf<'error'> | null
  /** `run.finished` was seen. */
  finished: boolean
  seconds: number | null
}

export function emptyProgress(): RunProgress {
  return {
    kind: undefined,
    phase: 'starting',
    total: null,
    done: 0,
    videos: new Map(),
    currentVideo: null,
    step: null,
    totalSteps: null,
    eta: null,
    loadSeconds: {},
    warnings: [],
    training: null,
    error: null,
    finished: false,
    seconds: null,
  }
}

type Handlers = { [T in RunEvent['type']]: (p: RunProgress, e: EventOf<T>) => void }

const finishVideo = (p: RunProgress, e: EventOf<'video.written' | 'video.skipped'>, skipped: boolean) => {
  if (!p.videos.has(e.video)) p.done++
  const path = e.type === 'video.written' ? { path: e.path } : {}
  p.videos.set(e.video, {
    video: e.video,
    frames: e.frames,
    fps: e.fps,
    seconds: e.seconds,
    skipped,
    ...path,
  })
}

const HANDLERS: Handlers = {
  'run.started': (p, e) => {
    p.kind = e.kind
    p.total = e.total
  },
  'model.loading': (p) => {
    p.phase = 'loading'
  },
  'model.loaded': (p, e) => {
    p.loadSeconds[e.component] = e.seconds
  },
  warning: (p, e) => {
    p.warnings.push(e.path ? `${e.path}: ${e.message}` : e.message)
  },
  'run.finished': (p, e) => {
    Object.assign(p, { phase: 'finished', finished: true, seconds: e.seconds, currentVideo: null, eta: null })
  },
  error: (p, e) => {
    p.error ??= e
  },
  'video.started': (p, e) => {
    Object.assign(p, { phase: 'sampling', currentVideo: e.video, step: 0, totalSteps: null, eta: null })
  },
  'video.skipped': (p, e) => finishVideo(p, e, true),
  step: (p, e) => {
    Object.assign(p, { phase: 'sampling', currentVideo: e.video, step: e.index + 1, totalSteps: e.total })
    p.eta = e.eta
  },
  'decode.window': (p) => {
    Object.assign(p, { phase: 'decoding', eta: null })
  },
  'video.written': (p, e) => finishVideo(p, e, false),
  'video.finished': () => {},
  'stage.started': (p, e) => {
    p.training = { ...(p.training ?? emptyTraining()), stage: e.stage }
  },
  'stage.finished': (p, e) => {
    p.training = { ...(p.training ?? emptyTraining()), lastCheckpoint: e.checkpoint }
  },
  'train.resumed': (p, e) => {
    Object.assign(p, { done: e.step, step: e.step })
  },
  'train.step': (p, e) => {
    Object.assign(p, { phase: 'training', done: e.step, step: e.step, totalSteps: e.steps, eta: e.eta })
    p.training = {
      ...(p.training ?? emptyTraining()),
      step: e.step,
      steps: e.steps,
      loss: e.loss,
      lr: e.lr,
      gradNorm: e.grad_norm,
      tokensPerSecond: e.tokens_per_second,
      secondsPerStep: e.seconds_per_step,
    }
  },
  'checkpoint.written': (p, e) => {
    p.training = { ...(p.training ?? emptyTraining()), lastCheckpoint: e.path }
  },
  'prepare.clip': (p, e) => {
    Object.assign(p, { phase: 'preparing', done: p.done + 1, total: e.total })
  },
  'convert.progress': (p, e) => {
    Object.assign(p, { phase: 'converting', done: e.done, total: e.total })
  },
  'convert.shard': () => {},
}

function emptyTraining(): TrainingProgress {
  return {
    stage: null,
    step: 0,
    steps: 0,
    loss: null,
    lr: {},
    gradNorm: null,
    tokensPerSecond: 0,
    secondsPerStep: 0,
    lastCheckpoint: null,
  }
}

/** Applies one event to `progress` (in place, O(1)) and returns it. */
export function applyEvent(progress: RunProgress, event: RunEvent): RunProgress {
  ;(HANDLERS[event.type] as (p: RunProgress, e: RunEvent) => void)(progress, event)
  return progress
}

/** The progress after `events`, in order. */
export function foldEvents(events: Iterable<RunEvent>, into: RunProgress = emptyProgress()): RunProgress {
  for (const event of events) applyEvent(into, event)
  return into
}
