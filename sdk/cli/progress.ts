import type { RunEvent } from '../launch/events.js'

/** Renders run events for a person: one updating line on a terminal, plain lines otherwise. */
export class ProgressDisplay {
  private videos = 0
  private done = 0
  private lastPlainStep = -1

  constructor(
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
  ) {}

  handle(event: RunEvent): void {
    switch (event.type) {
      case 'run.started':
        this.videos = event.videos
        this.line(`run started: ${event.videos} video(s), ${event.world_size} process(es) on ${event.device}`)
        break
      case 'model.loaded':
        this.status(`loaded ${event.component} (${event.seconds.toFixed(1)} s)`, true)
        break
      case 'prompt.skipped':
        this.done++
        this.line(`video ${event.video}: already complete, skipped`)
        break
      case 'prompt.started':
        this.lastPlainStep = -1
        this.status(
          `video ${event.video} (${this.done + 1}/${this.videos}): ${event.segments} segment(s), ${event.frames} frames`,
          true,
        )
        break
      case 'step': {
        const text = `video ${event.video} (${this.done + 1}/${this.videos}) sampling ${bar(event.index + 1, event.total)} step ${event.index + 1}/${event.total}, ETA ${fmt(event.eta)}`
        const tenth = Math.floor(((event.index + 1) * 10) / event.total)
        if (this.tty) this.status(text)
        else if (tenth !== this.lastPlainStep) {
          this.lastPlainStep = tenth
          this.line(text)
        }
        break
      }
      case 'decode.window':
        if (this.tty)
          this.status(
            `video ${event.video} decoding ${bar(event.index + 1, event.total)} window ${event.index + 1}/${event.total}`,
          )
        break
      case 'video.written':
        this.done++
        this.line(
          `video ${event.video}: wrote ${event.path} (${event.frames} frames, ${event.seconds.toFixed(1)} s of video)`,
        )
        break
      case 'run.finished':
        this.line(`run finished in ${event.seconds.toFixed(1)} s`)
        break
      case 'error':
        this.line(`error (${event.code}): ${event.message}`)
        break
      default:
        break
    }
  }

  finish(): void {
    if (this.tty) this.write('\r\x1b[2K')
  }

  private status(text: string, plainToo = false): void {
    if (this.tty) this.write(`\r\x1b[2K${text.slice(0, (process.stderr.columns ?? 100) - 1)}`)
    else if (plainToo) this.write(`${text}\n`)
  }

  private line(text: string): void {
    this.write(this.tty ? `\r\x1b[2K${text}\n` : `${text}\n`)
  }
}

function bar(done: number, total: number, width = 20): string {
  const filled = Math.round((done / total) * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

function fmt(seconds: number | null): string {
  if (seconds === null) return '?'
  if (seconds < 60) return `${seconds.toFixed(0)}s`
  return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`
}
