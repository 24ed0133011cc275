/**
 * `probe(file)`: the facts of a video file, with an exact frame count and warnings when the file looks
 * truncated.
 *
 * With an ffprobe binary it runs `ffprobe -count_packets` (JSON out). Without one (the usual case here:
 * imageio-ffmpeg ships no ffprobe) it asks `ttt_video.video_probe.probe_video` (PyAV) through the Python
 * bridge. Both count the packets of the first video stream without decoding: one packet per frame for
 * every codec this project writes, so the count is exact, where container headers are absent (webm) or
 * estimates. The count is then checked against what the headers declare (`probeWarnings`).
 */
import { PythonCallError } from '../python/bridge/index.js'
import { resolveVenvDir } from '../python/paths.js'
import { FfmpegError, FfmpegNotFoundError, VideoInputError } from './errors.js'
import { findFfmpeg, requireFile, runFfmpeg, type VideoOptions } from './ffmpeg.js'
import { callVideoPython, VideoPythonUnavailable } from './python.js'

export interface StreamInfo {
  index: number
  /** `video`, `audio`, `subtitle`, `data`, ... */
  type: string
  /** Codec name as ffmpeg spells it (`h264`, `vp9`, `gif`, `mov_text`, ...). */
  codec: string
}

export interface VideoInfo {
  file: string
  /** Exact number of frames present in the first video stream (its packets, counted). */
  frames: number
  /** Frame rate (the stream's r_frame_rate; 16 for this project's videos). */
  fps: number
  /** `frames / fps` seconds: exact for the constant-frame-rate videos this project writes. */
  duration: number
  /** The container's own duration in seconds (null when it has none). */
  containerDuration: number | null
  width: number
  height: number
  codec: string
  pixelFormat: string
  streams: StreamInfo[]
  /** What read the file. */
  probedWith: 'ffprobe' | 'pyav'
  /**
   * Where the frames present disagree with what the file's headers declare (a truncated or damaged file),
   * one sentence each; empty for a sound file. See `probeWarnings`.
   */
  warnings: string[]
}

export async function probe(file: string, options: VideoOptions = {}): Promise<VideoInfo> {
  const path = await requireFile(file)
  let ffprobe: string | null = null
  try {
    ffprobe = (await findFfmpeg(options)).ffprobe
  } catch (e) {
    // ffprobe does not need ffmpeg, nor does PyAV: only a broken explicit setting is fatal.
    if (!(e instanceof FfmpegNotFoundError) || options.ffmpegPath || (options.env ?? process.env).FFMPEG_PATH)
      throw e
  }
  return ffprobe ? probeWithFfprobe(ffprobe, path, options.signal) : probeWithPyav(path, options)
}

/** What a file's headers declare, next to the frames counted, for `probeWarnings`. */
export interface DeclaredFacts {
  file: string
  /** Frames counted (packets present). */
  frames: number
  fps: number
  /** The frame count the header declares (mp4 sample table); null when it has none (webm, gif). */
  declaredFrames: number | null
  /** The video stream's declared duration in seconds; null when it has none. */
  streamDuration: number | null
  containerDuration: number | null
  /** A read error that stopped the count early, if any. */
  readError?: string | null
}

/**
 * The disagreements between the frames present and the headers:
 * - a declared frame count (mp4's sample table) that differs from the count at all;
 * - `frames / fps` more than one frame interval (`1 / fps`) away from the declared duration (the video
 *   stream's, else the container's). One interval covers the rounding of timestamps and the last frame's
 *   display time; a truncated file misses whole frames. A variable-frame-rate file can trip this check;
 *   this project writes constant-rate files only.
 * - a read error that ended the count.
 */
export function probeWarnings(facts: DeclaredFacts): string[] {
  const { file, frames, fps } = facts
  const fix = 'the file is probably truncated or damaged; write or download it again'
  const warnings: string[] = []
  if (facts.readError) warnings.push(`${file}: ${facts.readError} after ${frames} frames; ${fix}`)
  if (facts.declaredFrames !== null && facts.declaredFrames !== frames) {
    warnings.push(
      `${file}: its header declares ${facts.declaredFrames} frames but ${frames} are present; ${fix}`,
    )
  }
  const declared = facts.streamDuration ?? facts.containerDuration
  if (declared !== null && fps > 0 && Math.abs(frames / fps - declared) > 1 / fps + 1e-6) {
    const which = facts.streamDuration !== null ? 'video stream' : 'container'
    warnings.push(
      `${file}: ${frames} frames at ${fps} fps last ${(frames / fps).toFixed(3)} s but the ${which} declares ${declared.toFixed(3)} s (more than one frame apart); ${fix}`,
    )
  }
  return warnings
}

function rate(fraction: string | undefined): number {
  const [num, den] = (fraction ?? '').split('/').map(Number)
  return num && den ? num / den : 0
}

/** A positive number from ffprobe's text, else null (`N/A`, absent, 0). */
function declared(value: string | undefined): number | null {
  const n = Number(value)
  return value !== undefined && Number.isFinite(n) && n > 0 ? n : null
}

interface FfprobeJson {
  streams?: {
    index: number
    codec_type?: string
    codec_name?: string
    width?: number
    height?: number
    pix_fmt?: string
    r_frame_rate?: string
    avg_frame_rate?: string
    nb_read_packets?: string
    nb_frames?: string
    duration?: string
  }[]
  format?: { duration?: string }
}

export async function probeWithFfprobe(
  ffprobe: string,
  file: string,
  signal?: AbortSignal,
): Promise<VideoInfo> {
  const entries =
    'stream=index,codec_type,codec_name,width,height,pix_fmt,r_frame_rate,avg_frame_rate,nb_read_packets,nb_frames,duration:format=duration'
  const out = await runFfmpeg(
    ffprobe,
    ['-v', 'error', '-count_packets', '-show_entries', entries, '-of', 'json', file],
    `ffprobe ${file}`,
    signal,
  )
  const json = JSON.parse(out) as FfprobeJson
  const streams = json.streams ?? []
  const video = streams.find((s) => s.codec_type === 'video')
  if (!video) throw new VideoInputError(`${file} has no video stream`)
  const fps = rate(video.r_frame_rate) || rate(video.avg_frame_rate)
  const frames = Number(video.nb_read_packets ?? 0)
  const containerDuration = declared(json.format?.duration)
  return {
    file,
    frames,
    fps,
    duration: fps ? frames / fps : (containerDuration ?? 0),
    containerDuration,
    width: video.width ?? 0,
    height: video.height ?? 0,
    codec: video.codec_name ?? 'unknown',
    pixelFormat: video.pix_fmt ?? 'unknown',
    streams: streams.map((s) => ({
      index: s.index,
      type: s.codec_type ?? 'unknown',
      codec: s.codec_name ?? 'unknown',
    })),
    probedWith: 'ffprobe',
    warnings: probeWarnings({
      file,
      frames,
      fps,
      declaredFrames: declared(video.nb_frames),
      streamDuration: declared(video.duration),
      containerDuration,
    }),
  }
}

/** What `ttt_video.video_probe.probe_video` answers. */
interface PyavProbe {
  streams: StreamInfo[]
  container_duration: number | null
  video: {
    packets: number
    demux_error: string | null
    declared_frames: number | null
    stream_duration: number | null
    fps: [number, number] | null
    width: number
    height: number
    codec: string
    pix_fmt: string
  } | null
}

/** Reads `file` with PyAV through the Python bridge. */
export async function probeWithPyav(file: string, options: VideoOptions = {}): Promise<VideoInfo> {
  const what = `probing ${file} with PyAV`
  const json = await callVideoPython<PyavProbe>('probe_video', { path: file }, what, options).catch(
    (e: unknown) => {
      throw probeError(e, file, what, resolveVenvDir(options.venvDir))
    },
  )
  const video = json.video
  if (!video) throw new VideoInputError(`${file} has no video stream`)
  const fps = video.fps ? video.fps[0] / video.fps[1] : 0
  return {
    file,
    frames: video.packets,
    fps,
    duration: fps ? video.packets / fps : (json.container_duration ?? 0),
    containerDuration: json.container_duration,
    width: video.width,
    height: video.height,
    codec: video.codec,
    pixelFormat: video.pix_fmt,
    streams: json.streams,
    probedWith: 'pyav',
    warnings: probeWarnings({
      file,
      frames: video.packets,
      fps,
      declaredFrames: video.declared_frames,
      streamDuration: video.stream_duration,
      containerDuration: json.container_duration,
      readError: video.demux_error,
    }),
  }
}

/** The typed error for a failed PyAV probe: no PyAV -> FfmpegNotFoundError, unreadable -> FfmpegError. */
function probeError(e: unknown, file: string, what: string, venvDir: string): unknown {
  if (e instanceof VideoPythonUnavailable) {
    return new FfmpegNotFoundError(
      [
        `cannot probe ${file}: no ffprobe found, and the Python environment ${venvDir} cannot run PyAV (${e.message}).`,
        'Fix with any of: npx ttt-video setup; apt-get install ffmpeg (brings ffprobe); export FFPROBE_PATH=/path/to/ffprobe',
      ].join('\n'),
      ['ffprobePath: unset', 'FFPROBE_PATH: unset', 'PATH: no ffprobe', `PyAV in ${venvDir}: ${e.message}`],
    )
  }
  if (e instanceof PythonCallError && e.pythonType === 'FileNotFoundError')
    return new VideoInputError(e.pythonMessage)
  if (e instanceof PythonCallError)
    return new FfmpegError(what, ['ttt_video.video_probe.probe_video', file], undefined, e.pythonMessage)
  return e
}
