/**
 * Small derived images of a video: an animated preview (GIF or WebM), a poster frame and a contact sheet.
 * Each is one input -> one output transcode, which is what fluent-ffmpeg's builder fits; its use stays in
 * this file behind `runFluent` (see docs/video-tools.md for why the rest uses explicit command lines).
 */
import ffmpeg from 'fluent-ffmpeg'
import { VideoInputError } from './errors.js'
import {
  findFfmpeg,
  requireFile,
  runFluent,
  siblingPath,
  type VideoOptions,
  writeAtomically,
} from './ffmpeg.js'
import { probe } from './probe.js'

export interface PreviewOptions extends VideoOptions {
  /** `gif` (palette-optimised, loops) or `webm` (VP9). Default `gif`. */
  format?: 'gif' | 'webm'
  /**
   * Output width in pixels (a positive integer; larger than the source's upscales); the height follows the
   * aspect ratio. Default: the source's width, at most 320 (never upscaled).
   */
  width?: number
  /** Output frame rate; default: the source's. */
  fps?: number
  /** Output file; default `<video>.preview.<format>` next to the video. */
  out?: string
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1)
    throw new VideoInputError(`${name} must be a positive integer, got ${value}; give a whole number >= 1`)
  return value
}

/** Widest default preview: larger sources are scaled down to it, smaller ones keep their width. */
export const PREVIEW_MAX_WIDTH = 320

/**
 * ffmpeg scale filter of a preview: an explicit `width`, or the source's width capped at 320 (an ffmpeg
 * expression, so no probe is needed). `even` rounds the width down to even and makes the height even
 * (VP9 with 4:2:0 chroma).
 */
export function previewScale(width: number | undefined, even: boolean): string {
  if (width === undefined) {
    const w = `min(iw\\,${PREVIEW_MAX_WIDTH})`
    return even ? `scale=w=2*trunc(${w}/2):h=-2` : `scale=w=${w}:h=-1`
  }
  const w = positiveInt(width, 'preview width')
  return even ? `scale=w=${Math.max(2, Math.round(w / 2) * 2)}:h=-2` : `scale=w=${w}:h=-1`
}

/** Writes an animated preview of `file`; resolves to its path. */
export async function preview(file: string, options: PreviewOptions = {}): Promise<string> {
  const input = await requireFile(file)
  const format = options.format ?? 'gif'
  if (format !== 'gif' && format !== 'webm')
    throw new VideoInputError(`preview format must be gif or webm, got ${format}`)
  const scale = previewScale(options.width, format === 'webm')
  const out = options.out ?? siblingPath(input, `.preview.${format}`)
  const { ffmpeg: binary } = await findFfmpeg(options)
  const fps = options.fps === undefined ? '' : `fps=${positiveInt(options.fps, 'fps')},`
  await writeAtomically(out, (tmp) => {
    const cmd = ffmpeg(input).setFfmpegPath(binary).noAudio()
    if (format === 'gif') {
      cmd
        .complexFilter(
          `[0:v]${fps}${scale}:flags=lanczos,split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=5`,
        )
        .outputOptions(['-loop', '0'])
        .format('gif')
    } else {
      cmd
        .videoFilters(`${fps}${scale}`)
        .videoCodec('libvpx-vp9')
        .outputOptions([
          '-pix_fmt',
          'yuv420p',
          '-b:v',
          '0',
          '-crf',
          '35',
          '-deadline',
          'good',
          '-cpu-used',
          '5',
          '-row-mt',
          '1',
        ])
        .format('webm')
    }
    return runFluent(cmd, tmp, `preview of ${input}`, options.signal)
  })
  return out
}

export interface PosterOptions extends VideoOptions {
  /** Time of the frame in seconds; default 0 (the first frame). */
  time?: number
  /** Output width; default: the video's. */
  width?: number
  /** Output file; default `<video>.poster.png` next to the video. */
  out?: string
}

/** Writes one frame of `file` as a PNG; resolves to its path. */
export async function poster(file: string, options: PosterOptions = {}): Promise<string> {
  const input = await requireFile(file)
  const time = options.time ?? 0
  if (!(time >= 0)) throw new VideoInputError(`poster time must be >= 0 seconds, got ${time}`)
  if (time > 0) {
    const info = await probe(input, options)
    if (time >= info.duration) {
      throw new VideoInputError(`poster time ${time} s is past the end of ${input} (${info.duration} s)`)
    }
  }
  const out = options.out ?? siblingPath(input, '.poster.png')
  const { ffmpeg: binary } = await findFfmpeg(options)
  await writeAtomically(out, (tmp) => {
    const cmd = ffmpeg(input).setFfmpegPath(binary).seekInput(time).noAudio().frames(1)
    if (options.width !== undefined) cmd.videoFilters(`scale=${positiveInt(options.width, 'width')}:-1`)
    cmd.videoCodec('png').outputOptions(['-update', '1']).format('image2')
    return runFluent(cmd, tmp, `poster of ${input}`, options.signal)
  })
  return out
}

export interface ContactSheetOptions extends VideoOptions {
  /** Default 4. */
  columns?: number
  /** Default 3. */
  rows?: number
  /** Width of the whole sheet in pixels (each tile gets `floor(width / columns)`); default 1024. */
  width?: number
  /** Output file; default `<video>.sheet.png` next to the video. */
  out?: string
}

export interface ContactSheet {
  path: string
  /** Sheet size in pixels: `columns * tileWidth` x `rows * tileHeight`. */
  width: number
  height: number
  tileWidth: number
  tileHeight: number
  columns: number
  rows: number
  /** The frame numbers shown, row by row. */
  frames: number[]
}

/** `count` frame numbers spread evenly over `total` frames, first and last included. */
export function evenlySpacedFrames(total: number, count: number): number[] {
  if (total <= 0 || count <= 0) return []
  if (count >= total) return Array.from({ length: total }, (_, i) => i)
  if (count === 1) return [Math.floor((total - 1) / 2)]
  return Array.from({ length: count }, (_, j) => Math.round((j * (total - 1)) / (count - 1)))
}

/** Writes a PNG grid of evenly spaced frames of `file`. */
export async function contactSheet(file: string, options: ContactSheetOptions = {}): Promise<ContactSheet> {
  const input = await requireFile(file)
  const columns = positiveInt(options.columns ?? 4, 'columns')
  const rows = positiveInt(options.rows ?? 3, 'rows')
  const width = positiveInt(options.width ?? 1024, 'width')
  const info = await probe(input, options)
  const tileWidth = Math.floor(width / columns)
  if (tileWidth < 2) throw new VideoInputError(`width ${width} is too small for ${columns} columns`)
  const tileHeight = Math.max(1, Math.round((tileWidth * info.height) / info.width))
  const frames = evenlySpacedFrames(info.frames, columns * rows)
  const select = frames.map((n) => `eq(n\\,${n})`).join('+')
  const out = options.out ?? siblingPath(input, '.sheet.png')
  const { ffmpeg: binary } = await findFfmpeg(options)
  await writeAtomically(out, (tmp) => {
    const cmd = ffmpeg(input)
      .setFfmpegPath(binary)
      .noAudio()
      .videoFilters(`select=${select},scale=${tileWidth}:${tileHeight}:flags=lanczos,tile=${columns}x${rows}`)
      .frames(1)
      .videoCodec('png')
      .outputOptions(['-update', '1'])
      .format('image2')
    return runFluent(cmd, tmp, `contact sheet of ${input}`, options.signal)
  })
  return {
    path: out,
    width: tileWidth * columns,
    height: tileHeight * rows,
    tileWidth,
    tileHeight,
    columns,
    rows,
    frames,
  }
}
