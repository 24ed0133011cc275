/**
 * `probe(file)`: the facts of a video file, with an exact frame count.
 *
 * With an ffprobe binary it runs `ffprobe -count_packets` (JSON out). Without one (the usual case here:
 * imageio-ffmpeg ships no ffprobe) it runs a few lines of PyAV in the managed Python environment, which
 * pins `av`. Both count the packets of the first video stream without decoding: one packet per frame for
 * every codec this project writes, so the count is exact, where container headers are absent (webm) or
 * estimates.
 */
import { execa } from 'execa'
import { resolveVenvDir, venvPython } from '../python/paths.js'
import { FfmpegError, FfmpegNotFoundError, VideoCancelledError, VideoInputError } from './errors.js'
import { findFfmpeg, requireFile, runFfmpeg, type VideoOptions } from './ffmpeg.js'

export interface StreamInfo {
  index: number
  /** `video`, `audio`, `subtitle`, `data`, ... */
  type: string
  /** Codec name as ffmpeg spells it (`h264`, `vp9`, `gif`, `mov_text`, ...). */
  codec: string
}

export interface VideoInfo {
  file: string
  /** Exact number of frames of the first video stream. */
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

function rate(fraction: string | undefined): number {
  const [num, den] = (fraction ?? '').split('/').map(Number)
  return num && den ? num / den : 0
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
  }[]
  format?: { duration?: string }
}

export async function probeWithFfprobe(
  ffprobe: string,
  file: string,
  signal?: AbortSignal,
): Promise<VideoInfo> {
  const out = await runFfmpeg(
    ffprobe,
    [
      '-v',
      'error',
      '-count_packets',
      '-show_entries',
      'stream=index,codec_type,codec_name,width,height,pix_fmt,r_frame_rate,avg_frame_rate,nb_read_packets:format=duration',
      '-of',
      'json',
      file,
    ],
    `ffprobe ${file}`,
    signal,
  )
  const json = JSON.parse(out) as FfprobeJson
  const streams = json.streams ?? []
  const video = streams.find((s) => s.codec_type === 'video')
  if (!video) throw new VideoInputError(`${file} has no video stream`)
  const fps = rate(video.r_frame_rate) || rate(video.avg_frame_rate)
  const frames = Number(video.nb_read_packets ?? 0)
  const containerDuration = json.format?.duration ? Number(json.format.duration) : null
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
  }
}

// Counts the packets of the first video stream (no decoding) and reads the stream parameters.
const PYAV_PROBE = `
import json, sys
import av
try:
    c = av.open(sys.argv[1])
except av.FFmpegError as e:
    sys.exit(f"cannot read {sys.argv[1]}: {e}")
with c:
    streams = [{"index": s.index, "type": s.type, "codec": s.codec_context.name if s.codec_context else "unknown"} for s in c.streams]
    out = {"streams": streams, "container_duration": c.duration / 1e6 if c.duration else None}
    if c.streams.video:
        v = c.streams.video[0]
        cc = v.codec_context
        r = v.base_rate or v.average_rate or v.guessed_rate
        out.update(
            frames=sum(1 for p in c.demux(v) if p.size),
            fps=[r.numerator, r.denominator] if r else None,
            width=cc.width, height=cc.height, codec=cc.name, pix_fmt=cc.pix_fmt or "unknown",
        )
print(json.dumps(out))
`

interface PyavJson {
  streams: StreamInfo[]
  container_duration: number | null
  frames?: number
  fps?: [number, number] | null
  width?: number
  height?: number
  codec?: string
  pix_fmt?: string
}

export async function probeWithPyav(file: string, options: VideoOptions): Promise<VideoInfo> {
  const venvDir = resolveVenvDir(options.venvDir)
  const python = venvPython(venvDir)
  const what = `probing ${file} with PyAV`
  if (options.signal?.aborted) throw new VideoCancelledError(what, options.signal.reason)
  const r = await execa(python, ['-c', PYAV_PROBE, file], {
    reject: false,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
  })
  if (r.isCanceled) throw new VideoCancelledError(what, options.signal?.reason)
  if (r.failed) {
    if ((r as { code?: string }).code === 'ENOENT' || /No module named 'av'/.test(r.stderr)) {
      throw new FfmpegNotFoundError(
        [
          `cannot probe ${file}: no ffprobe found, and the Python environment ${venvDir} cannot run PyAV.`,
          'Fix with any of: npx ttt-video setup; apt-get install ffmpeg (brings ffprobe); export FFPROBE_PATH=/path/to/ffprobe',
        ].join('\n'),
        ['ffprobePath: unset', 'FFPROBE_PATH: unset', 'PATH: no ffprobe', `PyAV in ${venvDir}: unavailable`],
      )
    }
    throw new FfmpegError(
      what,
      [python, '-c', '<probe script>', file],
      r.exitCode,
      r.stderr || r.message || '',
    )
  }
  const json = JSON.parse(r.stdout) as PyavJson
  if (json.frames === undefined) throw new VideoInputError(`${file} has no video stream`)
  const fps = json.fps ? json.fps[0] / json.fps[1] : 0
  return {
    file,
    frames: json.frames,
    fps,
    duration: fps ? json.frames / fps : (json.container_duration ?? 0),
    containerDuration: json.container_duration,
    width: json.width ?? 0,
    height: json.height ?? 0,
    codec: json.codec ?? 'unknown',
    pixelFormat: json.pix_fmt ?? 'unknown',
    streams: json.streams,
    probedWith: 'pyav',
  }
}
