import { open } from 'node:fs/promises'
import { RunEvent } from '../contracts/events.js'

/** What the follower does with a line that is not a valid event. */
export type InvalidEventHandler = (line: string, problem: string) => void

/**
 * Follows a JSON-lines file that other processes append to, yielding each complete line as a validated
 * event. `stop()` makes it read what is left and end, whenever it is called (also in the middle of a
 * read): the loop checks for a stop after every read, and its waits are ordinary timers, so a pending
 * follower always keeps Node alive until it has ended.
 */
export class EventFollower {
  private offset: number
  private partial: Buffer = Buffer.alloc(0)
  private stopping = false
  private wake: (() => void) | undefined

  /** `from`: the byte offset to start at (the size of the file when a resumed run starts). */
  constructor(
    private readonly file: string,
    private readonly onInvalid: InvalidEventHandler,
    private readonly intervalMs = 100,
    from = 0,
  ) {
    this.offset = from
  }

  stop(): void {
    this.stopping = true
    this.wake?.()
  }

  async *events(): AsyncGenerator<RunEvent> {
    for (;;) {
      // A stop that came before this read is covered by it: everything written before the stop is read.
      const lastRead = this.stopping
      for (const line of await this.readNewLines()) yield* this.parse(line)
      if (lastRead) return
      await this.pause()
    }
  }

  /** Waits for the next poll, or not at all when a stop has arrived (then one last read follows). */
  private pause(): Promise<void> {
    if (this.stopping) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.intervalMs)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }

  private *parse(line: string): Generator<RunEvent> {
    if (line.trim() === '') return
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      this.onInvalid(line, 'not JSON')
      return
    }
    const result = RunEvent.safeParse(value)
    if (result.success) yield result.data
    else this.onInvalid(line, result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '))
  }

  /** The complete lines appended since the last read (a line cut by a write waits for its end). */
  protected async readNewLines(): Promise<string[]> {
    let handle: Awaited<ReturnType<typeof open>>
    try {
      handle = await open(this.file, 'r')
    } catch {
      return [] // not created yet
    }
    try {
      const chunks: Buffer[] = []
      for (;;) {
        const buffer = Buffer.alloc(1 << 16)
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.offset)
        if (bytesRead === 0) break
        this.offset += bytesRead
        chunks.push(buffer.subarray(0, bytesRead))
      }
      if (chunks.length === 0) return []
      // Split on the last newline byte, so a multi-byte character cut by a read stays whole.
      const bytes = Buffer.concat([this.partial, ...chunks])
      const end = bytes.lastIndexOf(0x0a)
      this.partial = bytes.subarray(end + 1)
      return end < 0 ? [] : bytes.subarray(0, end).toString('utf8').split('\n')
    } finally {
      await handle.close()
    }
  }
}
