import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { EventFollower } from '../../sdk/launch/follow.js'
import { ROOT } from '../helpers.js'

const tmp = mkdtempSync(join(tmpdir(), 'ttt-follow-'))
const event = (index: number) =>
  `${JSON.stringify({ v: 2, type: 'model.loading', time: 1, rank: 0, component: `c${index}` })}\n`

/** A follower whose read calls `stop()` in its middle: the race that once lost the stop. */
class StopDuringRead extends EventFollower {
  reads = 0
  protected override async readNewLines(): Promise<string[]> {
    this.reads++
    if (this.reads === 2) this.stop()
    return super.readNewLines()
  }
}

describe('EventFollower', () => {
  it('ends after a stop() that arrives during a read, with every line written before it', async () => {
    const file = join(tmp, 'events.jsonl')
    writeFileSync(file, event(0))
    const follower = new StopDuringRead(file, () => {}, 20)
    const seen: string[] = []
    const done = (async () => {
      for await (const e of follower.events()) if (e.type === 'model.loading') seen.push(e.component)
    })()
    await new Promise((r) => setTimeout(r, 5))
    appendFileSync(file, event(1))
    await done
    expect(seen).toEqual(['c0', 'c1'])
    expect(follower.reads).toBeLessThanOrEqual(3)
  })

  it('keeps Node alive until it has ended: a script that awaits it exits 0, not 13', async () => {
    const file = join(tmp, 'alive.jsonl')
    writeFileSync(file, event(0))
    const script = `
      import { EventFollower } from ${JSON.stringify(join(ROOT, 'dist', 'launch', 'follow.js'))}
      class F extends EventFollower {
        n = 0
        async readNewLines() { if (++this.n === 2) this.stop(); return super.readNewLines() }
      }
      const f = new F(${JSON.stringify(file)}, () => {}, 1000)
      let count = 0
      for await (const e of f.events()) count++
      console.log('done', count)`
    const r = await execa('node', ['--input-type=module', '-e', script], { reject: false })
    expect([r.exitCode, r.stdout.trim()]).toEqual([0, 'done 1'])
  })
})

describe('startRun and invalid events', () => {
  // A "run" that is a shell writing its own events: one valid start, one line that is no event, the end.
  const script = (events: string) =>
    [
      `printf '%s\\n' '${JSON.stringify({ v: 2, type: 'run.started', time: 1, rank: 0, kind: 'sample', run_dir: '.', world_size: 1, device: 'cpu', total: 0 })}' >> ${events}`,
      `printf '%s\\n' '{"v": 2, "type": "no.such.event", "time": 1, "rank": 0}' >> ${events}`,
      `printf '%s\\n' '${JSON.stringify({ v: 2, type: 'run.finished', time: 2, rank: 0, seconds: 1 })}' >> ${events}`,
    ].join('; ')

  async function runWith(strict: boolean) {
    const { startRun } = await import('../../sdk/launch/run.js')
    const runDir = mkdtempSync(join(tmp, 'strict-'))
    const run = startRun({
      kind: 'sample',
      command: ['sh', '-c', script(join(runDir, 'events.jsonl'))],
      runDir,
      collect: () => 'ok',
      strictEvents: strict,
    })
    for await (const _ of run) {
      // drain
    }
    return run.result
  }

  it('skips a line that is no event by default, and fails the run with strictEvents', async () => {
    await expect(runWith(false)).resolves.toBe('ok')
    await expect(runWith(true)).rejects.toThrow(/wrote 1 invalid event\(s\); the first: .*no\.such\.event/)
  })
})
