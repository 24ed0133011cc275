/**
 * Subtitles for a multi-scene video: one cue per 3-second segment, showing that segment's prompt.
 *
 * Segment i covers [3i, 3i + 3) s. A video of n segments has 48n + 1 frames at 16 fps, i.e. 3n s and one
 * frame, so the last cue ends at the video's end (3n + 1/16 s), not at 3n.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { END_SCENE, START_SCENE } from '../contracts/storyboard.js'
import { VideoInputError } from './errors.js'
import {
  findFfmpeg,
  requireFile,
  runFfmpeg,
  siblingPath,
  type VideoOptions,
  writeAtomically,
} from './ffmpeg.js'
import { probe } from './probe.js'

export type SubtitleFormat = 'vtt' | 'srt'

/** Segment prompts and timing given directly instead of a run folder. */
export interface SegmentsSource {
  segments: string[]
  /** Default 3. */
  secondsPerSegment?: number
  /** Default 16. */
  fps?: number
  /** Frames of the video; default `segments * secondsPerSegment * fps + 1`. */
  frames?: number
}

export interface SubtitleCue {
  /** 1-based, as in SRT. */
  index: number
  /** Seconds. */
  start: number
  end: number
  text: string
}

export interface SubtitlesOptions extends VideoOptions {
  /** Default `vtt`. */
  format?: SubtitleFormat
  /**
   * Where to write the subtitle file. Default for a run folder: `<folder>/video.<format>`; for a
   * `SegmentsSource` nothing is written unless `out` is given.
   */
  out?: string
  /** Also write an mp4 with the cues as a mov_text subtitle track (stream copy of the video). */
  mux?: boolean
  /** The video to mux into; default `<folder>/video.mp4`. */
  video?: string
  /** The muxed file; default `<video>.subtitled.mp4` next to the video. */
  muxOut?: string
  /** ISO 639-2 language of the subtitle track; default `eng`. */
  language?: string
}

export interface SubtitlesResult {
  format: SubtitleFormat
  cues: SubtitleCue[]
  /** The subtitle file's content. */
  text: string
  /** The subtitle file written, or null. */
  path: string | null
  /** The mp4 with a subtitle track, or null. */
  muxed: string | null
}

/** The prompt as a viewer should read it: no scene tokens, whitespace collapsed. */
export function stripSceneTokens(prompt: string): string {
  return prompt.split(START_SCENE).join(' ').split(END_SCENE).join(' ').replace(/\s+/g, ' ').trim()
}

/** One cue per segment; see the module comment for the timing. */
export function subtitleCues(source: SegmentsSource): SubtitleCue[] {
  const n = source.segments.length
  const sps = source.secondsPerSegment ?? 3
  const fps = source.fps ?? 16
  if (n === 0) throw new VideoInputError('no segment prompts to make subtitles from')
  if (!(sps > 0) || !(fps > 0))
    throw new VideoInputError(`secondsPerSegment and fps must be > 0 (got ${sps}, ${fps})`)
  const frames = source.frames ?? Math.round(n * sps * fps) + 1
  const end = frames / fps
  if (end <= (n - 1) * sps) {
    throw new VideoInputError(
      `the video (${frames} frames at ${fps} fps = ${end} s) is too short for ${n} segments of ${sps} s`,
    )
  }
  return source.segments.map((prompt, i) => ({
    index: i + 1,
    start: i * sps,
    end: i === n - 1 ? end : Math.min((i + 1) * sps, end),
    text: stripSceneTokens(prompt),
  }))
}

function timestamp(seconds: number, format: SubtitleFormat): string {
  const ms = Math.round(seconds * 1000)
  const h = Math.floor(ms / 3_600_000)
  const m = Math.floor(ms / 60_000) % 60
  const s = Math.floor(ms / 1000) % 60
  const pad = (v: number, w = 2) => String(v).padStart(w, '0')
  const frac = pad(ms % 1000, 3)
  if (format === 'srt') return `${pad(h)}:${pad(m)}:${pad(s)},${frac}`
  return h > 0 ? `${pad(h)}:${pad(m)}:${pad(s)}.${frac}` : `${pad(m)}:${pad(s)}.${frac}`
}

/** WebVTT or SubRip text for `cues`. */
export function formatSubtitles(cues: SubtitleCue[], format: SubtitleFormat): string {
  const blocks = cues.map((c) => {
    const text =
      format === 'vtt' ? c.text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;') : c.text
    const time = `${timestamp(c.start, format)} --> ${timestamp(c.end, format)}`
    return `${c.index}\n${time}\n${text || ' '}\n`
  })
  return `${format === 'vtt' ? 'WEBVTT\n\n' : ''}${blocks.join('\n')}`
}

interface RunFolder {
  dir: string
  segments: string[]
  fps?: number
  frames?: number
}

function num(...values: unknown[]): number | undefined {
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v
  return undefined
}

/**
 * Reads a video folder of a run directory (`video-<k>/`): `prompt.txt` holds the segment prompts joined
 * by blank lines; `meta.json`, when present, may give `fps` (or `sampling_fps`) and `frames` (or
 * `num_frames`, `frame_count`), at its top level or under `video`.
 */
export async function readRunFolder(folder: string): Promise<RunFolder> {
  const dir = resolve(folder)
  const promptFile = join(dir, 'prompt.txt')
  const text = await readFile(promptFile, 'utf8').catch(() => {
    throw new VideoInputError(`${promptFile} is missing: is ${dir} a video folder of a run (video-<k>/)?`)
  })
  const segments = text
    .replace(/\r\n/g, '\n')
    .split(/\n[ \t]*\n/)
    .map((s) => s.trim())
    .filter(Boolean)
  let meta: Record<string, unknown> = {}
  const metaText = await readFile(join(dir, 'meta.json'), 'utf8').catch(() => null)
  if (metaText !== null) {
    try {
      meta = JSON.parse(metaText) as Record<string, unknown>
    } catch (e) {
      throw new VideoInputError(`${join(dir, 'meta.json')} is not JSON: ${(e as Error).message}`)
    }
  }
  const video = (typeof meta.video === 'object' && meta.video ? meta.video : {}) as Record<string, unknown>
  return {
    dir,
    segments,
    fps: num(meta.fps, meta.sampling_fps, video.fps),
    frames: num(meta.frames, meta.num_frames, meta.frame_count, video.frames),
  }
}

/**
 * Subtitles for a run's video folder, or for segment prompts given directly: one cue per segment
 * with its prompt (scene tokens stripped). Optionally writes the file and muxes a subtitled mp4.
 */
export async function subtitles(
  source: string | SegmentsSource,
  options: SubtitlesOptions = {},
): Promise<SubtitlesResult> {
  const format = options.format ?? 'vtt'
  if (format !== 'vtt' && format !== 'srt')
    throw new VideoInputError(`subtitle format must be vtt or srt, got ${format}`)
  const folder = typeof source === 'string' ? await readRunFolder(source) : undefined
  const timing: SegmentsSource =
    typeof source === 'string'
      ? { segments: folder!.segments, fps: folder!.fps, frames: folder!.frames }
      : { ...source }

  let video: string | undefined
  if (options.mux) {
    const wanted = options.video ?? (folder ? join(folder.dir, 'video.mp4') : undefined)
    if (!wanted) throw new VideoInputError('mux needs a video: pass options.video')
    video = await requireFile(wanted, 'video to mux into')
    // The file is the truth: its frame count and rate place the last cue's end.
    const info = await probe(video, options)
    timing.fps = info.fps
    timing.frames = info.frames
  }

  const cues = subtitleCues(timing)
  const text = formatSubtitles(cues, format)
  const out = options.out ?? (folder ? join(folder.dir, `video.${format}`) : undefined)
  if (out) await writeAtomically(out, (tmp) => writeFile(tmp, text, 'utf8'))

  let muxed: string | null = null
  if (video) {
    muxed = options.muxOut ?? siblingPath(video, '.subtitled.mp4')
    await muxSubtitles(video, formatSubtitles(cues, 'srt'), muxed, options)
  }
  return { format, cues, text, path: out ?? null, muxed }
}

/** Writes `out`: `video` (streams copied) plus `srt` as a mov_text track. */
async function muxSubtitles(
  video: string,
  srt: string,
  out: string,
  options: SubtitlesOptions,
): Promise<void> {
  const { ffmpeg } = await findFfmpeg(options)
  const scratch = await mkdtemp(join(tmpdir(), 'ttt-subs-'))
  try {
    const srtFile = join(scratch, 'cues.srt')
    await writeFile(srtFile, srt, 'utf8')
    await writeAtomically(out, (tmp) =>
      runFfmpeg(
        ffmpeg,
        [
          ...['-hide_banner', '-nostdin', '-loglevel', 'error', '-y'],
          ...['-i', video, '-f', 'srt', '-i', srtFile],
          ...['-map', '0:v', '-map', '0:a?', '-map', '1:0'],
          ...['-c:v', 'copy', '-c:a', 'copy', '-c:s', 'mov_text'],
          ...['-metadata:s:s:0', `language=${options.language ?? 'eng'}`],
          ...['-movflags', '+faststart', '-f', 'mp4', tmp],
        ],
        `muxing subtitles into ${video}`,
        options.signal,
      ),
    )
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}
