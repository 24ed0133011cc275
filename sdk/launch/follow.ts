import { open } from 'node:fs/promises'
import { RunEvent } from './events.js'

/**
 * Follows a JSON-lines file that other processes append to, yielding each complete line as a validated
 * event. `stop()` makes it read what is left and end.
 */
export class EventFollower {
  private offset = 0
  private partial: Buffer = Buffer.alloc(0)
  private stopping = false
  private wake: (() => void) | undefined

  /** `from`: the byte offset to start at (the size of the file when a resumed run starts). */
  constructor(
    private readonly file: string,
    private readonly onInvalid: (line: string, problem: string) => void,
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
      const stopping = this.stopping
      for (const line of await this.readNewLines()) yield* this.parse(line)
      if (stopping) return
      await new Promise<void>((resolve) => {
        this.wake = resolve
        setTimeout(resolve, this.intervalMs).unref()
      })
    }
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

  private async readNewLines(): Promise<string[]> {
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
