import type { RunEvent } from '../contracts/events.js'
import type { RunProgress } from '../contracts/fold.js'

// Run events for a person: one updating line on a terminal, plain lines otherwise. The numbers come
// from the run's fold (contracts/fold.ts), the same one the server and the Run result read.

export class ProgressDisplay {
  private lastTenth = -1

  constructor(
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
  ) {}

  handle(event: RunEvent, p: RunProgress): void {
    const line = this.lineFor(event, p)
    if (line !== undefined) this.line(line)
    const status = this.statusFor(event, p)
    if (status === undefined) return
    if (this.tty) this.status(status)
    else if (event.type !== 'step' && event.type !== 'train.step') return
    else if (this.tenth(p) !== this.lastTenth) {
      this.lastTenth = this.tenth(p)
      this.line(status)
    }
  }

  finish(): void {
    if (this.tty) this.write('\r\x1b[2K')
  }

  private tenth(p: RunProgress): number {
    return p.totalSteps ? Math.floor(((p.step ?? 0) * 10) / p.totalSteps) : 0
  }

  /** Lines that stay: things that happened once. */
  private lineFor(e: RunEvent, p: RunProgress): string | undefined {
    switch (e.type) {
      case 'run.started':
        return `${e.kind} run started: ${e.total} item(s), ${e.world_size} process(es) on ${e.device}`
      case 'model.loaded':
        return this.tty ? undefined : `loaded ${e.component} (${e.seconds.toFixed(1)} s)`
      case 'video.skipped':
        return `video ${e.video}: already complete, skipped`
      case 'video.written':
        return `video ${e.video}: wrote ${e.path} (${e.frames} frames, ${e.seconds.toFixed(1)} s of video)`
      case 'warning':
        return `warning: ${e.path ? `${e.path}: ` : ''}${e.message}`
      case 'checkpoint.written':
        return `step ${e.step}: checkpoint ${e.path}`
      case 'stage.started':
        return `stage ${e.stage} (${e.index + 1}/${e.stages})`
      case 'prepare.clip':
        return `clip ${e.clip + 1}/${e.total}: ${e.status} ${e.path}`
      case 'run.finished':
        return `run finished in ${e.seconds.toFixed(1)} s (${p.done} done)`
      case 'error':
        return `error (${e.code}): ${e.message}`
      default:
        return undefined
    }
  }

  /** The live line: where a long loop stands. */
  private statusFor(e: RunEvent, p: RunProgress): string | undefined {
    const of = p.total ? `${Math.min(p.done + 1, p.total)}/${p.total}` : ''
    switch (e.type) {
      case 'video.started':
        return `video ${e.video} (${of}): ${e.segments} segment(s), ${e.frames} frames`
      case 'step':
        return `video ${e.video} (${of}) sampling ${bar(e.index + 1, e.total)} step ${e.index + 1}/${e.total}, ETA ${fmt(e.eta)}`
      case 'decode.window':
        return `video ${e.video} decoding ${bar(e.index + 1, e.total)} window ${e.index + 1}/${e.total}`
      case 'train.step':
        return `step ${e.step}/${e.steps} ${bar(e.step, e.steps)} loss ${e.loss?.toPrecision(4) ?? 'nan'}, ${e.seconds_per_step.toFixed(2)} s/step, ETA ${fmt(e.eta)}`
      case 'convert.progress':
        return `converting ${bar(e.done, e.total)} ${e.done}/${e.total} tensors`
      default:
        return undefined
    }
  }

  private status(text: string): void {
    this.write(`\r\x1b[2K${text.slice(0, (process.stderr.columns ?? 100) - 1)}`)
  }

  private line(text: string): void {
    this.write(this.tty ? `\r\x1b[2K${text}\n` : `${text}\n`)
  }
}

function bar(done: number, total: number, width = 20): string {
  const filled = Math.round((Math.min(done, total) / total) * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

function fmt(seconds: number | null): string {
  if (seconds === null) return '?'
  if (seconds < 60) return `${seconds.toFixed(0)}s`
  return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`
}
