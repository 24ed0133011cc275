import { TttVideoError } from '../errors.js'

/** No ffmpeg (or, for `probe`, neither ffprobe nor PyAV) could be found; the message says how to get one. */
export class FfmpegNotFoundError extends TttVideoError {
  /** Every place that was looked at, and what was found there. */
  readonly searched: string[]
  constructor(message: string, searched: string[]) {
    super('FFMPEG_MISSING', message)
    this.searched = searched
  }
}

/** ffmpeg (or ffprobe, or the PyAV probe) ran and failed. */
export class FfmpegError extends TttVideoError {
  /** The command line, program first. */
  readonly command: string[]
  readonly exitCode: number | undefined
  /** The end of its stderr (ffmpeg's own message is usually in the last lines). */
  readonly stderr: string
  constructor(what: string, command: string[], exitCode: number | undefined, stderr: string) {
    const tail = stderr.trim().split('\n').slice(-15).join('\n')
    super(
      'FFMPEG',
      `${what} failed${exitCode === undefined ? '' : ` (exit ${exitCode})`}${tail ? `:\n${tail}` : ''}`,
    )
    this.command = command
    this.exitCode = exitCode
    this.stderr = stderr
  }
}

/** The operation was stopped through its AbortSignal; ffmpeg was killed and no output was left. */
export class VideoCancelledError extends TttVideoError {
  constructor(what: string, reason?: unknown) {
    super('CANCELLED', `${what} was cancelled`, { cause: reason })
  }
}

/** An input that cannot be used: a missing file, a run folder without prompts, mismatched concat inputs. */
export class VideoInputError extends TttVideoError {
  constructor(message: string) {
    super('VIDEO_INPUT', message)
  }
}
