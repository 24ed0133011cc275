import type { RunProgress } from '../contracts/fold.js'
import { readVideoMeta, type VideoMeta, videoFile } from '../contracts/run-dir.js'

export interface VideoResult {
  /** Index of the video in the storyboards. */
  index: number
  path: string
  frames: number
  fps: number
  /** Length of the video in seconds. */
  seconds: number
  prompts: string[]
  /** The video's meta.json (seed, model identity, timings per step and per window). */
  meta: VideoMeta
}

export interface GenerateResult {
  runDir: string
  videos: VideoResult[]
  /** Wall-clock seconds of the whole run, launch to exit. */
  seconds: number
  /** Seconds each model component took to load (from the events). */
  loadSeconds: Record<string, number>
}

/** The videos of a finished sampling run, read from their meta.json files. */
export function collectVideos(
  progress: RunProgress,
  runDir: string,
  count: number,
  seconds: number,
): GenerateResult {
  const videos: VideoResult[] = []
  for (let index = 0; index < count; index++) {
    const meta = readVideoMeta(runDir, index)
    if (!meta) continue
    const { frames, fps, seconds: length, prompts } = meta
    videos.push({ index, path: videoFile(runDir, index), frames, fps, seconds: length, prompts, meta })
  }
  return { runDir, videos, seconds, loadSeconds: { ...progress.loadSeconds } }
}
