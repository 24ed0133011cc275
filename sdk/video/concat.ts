/** Joins mp4 files of identical parameters without re-encoding (ffmpeg's concat demuxer). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { VideoInputError } from './errors.js'
import { findFfmpeg, requireFile, runFfmpeg, type VideoOptions, writeAtomically } from './ffmpeg.js'
import { probe, type VideoInfo } from './probe.js'

export interface ConcatResult {
  path: string
  /** Sum of the inputs' frames. */
  frames: number
  /** Sum of the inputs' durations, seconds. */
  duration: number
  inputs: VideoInfo[]
}

const SAME: (keyof VideoInfo)[] = ['codec', 'width', 'height', 'pixelFormat', 'fps']

/** The concat demuxer's list-file line for `file` (absolute path, single quotes escaped). */
export function concatListLine(file: string): string {
  return `file '${resolve(file).replace(/'/g, `'\\''`)}'`
}

/**
 * Writes `out`, the videos of `files` one after the other. They must share codec, size, pixel format,
 * frame rate and stream layout (as the clips of one run do); otherwise VideoInputError says which differs.
 */
export async function concat(
  files: string[],
  out: string,
  options: VideoOptions = {},
): Promise<ConcatResult> {
  if (files.length === 0) throw new VideoInputError('concat needs at least one input video')
  const paths = await Promise.all(files.map((f) => requireFile(f)))
  const inputs: VideoInfo[] = []
  for (const p of paths) inputs.push(await probe(p, options)) // one at a time: few cores
  const first = inputs[0]!
  const layout = (v: VideoInfo) => v.streams.map((s) => `${s.type}:${s.codec}`).join(',')
  for (const info of inputs.slice(1)) {
    for (const key of SAME) {
      if (info[key] !== first[key]) {
        throw new VideoInputError(
          `cannot concat without re-encoding: ${info.file} has ${key} ${info[key]} but ${first.file} has ${first[key]}`,
        )
      }
    }
    if (layout(info) !== layout(first)) {
      throw new VideoInputError(
        `cannot concat: ${info.file} has streams [${layout(info)}] but ${first.file} has [${layout(first)}]`,
      )
    }
  }

  const { ffmpeg } = await findFfmpeg(options)
  const scratch = await mkdtemp(join(tmpdir(), 'ttt-concat-'))
  const target = resolve(out)
  try {
    const list = join(scratch, 'list.txt')
    await writeFile(list, `${paths.map(concatListLine).join('\n')}\n`, 'utf8')
    await writeAtomically(target, (tmp) =>
      runFfmpeg(
        ffmpeg,
        [
          ...['-hide_banner', '-nostdin', '-loglevel', 'error', '-y'],
          ...['-f', 'concat', '-safe', '0', '-i', list],
          ...['-map', '0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', tmp],
        ],
        `concatenating ${paths.length} videos into ${target}`,
        options.signal,
      ),
    )
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
  return {
    path: target,
    frames: inputs.reduce((a, v) => a + v.frames, 0),
    duration: inputs.reduce((a, v) => a + v.duration, 0),
    inputs,
  }
}
