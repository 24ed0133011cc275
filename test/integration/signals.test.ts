import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import { beforeAll, describe, expect, it } from 'vitest'
import { demoBundle } from '../../sdk/runs/demo.js'
import { alive, descendants, READY_STORYBOARD, ROOT, readCases } from '../helpers.js'

// A signal to the CLI (or to whatever launched it) ends the whole Python tree: every case of
// test/vectors/signals.jsonl, with the real CLI, Python and torchrun.

interface SignalCase {
  name: string
  signal: NodeJS.Signals
  target: 'cli' | 'launcher'
  gpus: number
  exit: number | null
  code: string | null
}

const tmp = mkdtempSync(join(tmpdir(), 'ttt-signals-'))
const env = { TTT_VIDEO_CACHE: join(tmp, 'cache') }
const CLI = join(ROOT, 'dist', 'cli', 'main.js')

function start(c: SignalCase, out: string): { run: ResultPromise; cliPid: () => number | undefined } {
  const args = [CLI, 'generate', READY_STORYBOARD, '--json', '--out', out, '--gpus', String(c.gpus)]
  const argv = [...args, '--set', 'eval.num_denoising_steps=500']
  if (c.target === 'cli') {
    const run = execa('node', argv, { reject: false, env, buffer: true, lines: true })
    return { run, cliPid: () => run.pid }
  }
  // `; :` keeps the shell as the CLI's parent (no exec), as npm exec's shell does
  const run = execa('sh', ['-c', `node ${argv.map((a) => `'${a}'`).join(' ')}; :`], {
    reject: false,
    env,
    lines: true,
  })
  return { run, cliPid: () => descendants(run.pid!).find((pid) => pid !== run.pid) }
}

/** Resolves once the CLI's --json output has shown a sampling step (the output keeps flowing). */
function firstStep(run: ResultPromise): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = ''
    const onData = (chunk: Buffer) => {
      text += chunk.toString()
      if (!text.includes('"type":"step"')) return
      run.stdout?.off('data', onData)
      resolve()
    }
    run.stdout?.on('data', onData)
    void run.then(() => reject(new Error(`the run ended before its first step:\n${text}`)))
  })
}

async function gone(pids: number[], ms: number): Promise<number[]> {
  const until = performance.now() + ms
  while (performance.now() < until && pids.some(alive)) await new Promise((r) => setTimeout(r, 100))
  return pids.filter(alive)
}

describe('signals (test/vectors/signals.jsonl)', () => {
  beforeAll(async () => {
    process.env.TTT_VIDEO_CACHE = env.TTT_VIDEO_CACHE
    await demoBundle()
  })

  it.each(readCases<SignalCase>('signals.jsonl').map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const { run, cliPid } = start(c, join(tmp, c.name.replace(/\W+/g, '-')))
    await firstStep(run)
    const cli = cliPid()!
    const tree = [cli, ...descendants(cli)]
    expect(tree.length).toBeGreaterThanOrEqual(c.gpus === 1 ? 2 : 4) // the CLI, Python (torchrun + workers)
    process.kill(c.target === 'cli' ? cli : run.pid!, c.signal)
    expect(await gone(tree, 15_000)).toEqual([])
    const result = await run
    if (c.target === 'cli' && c.exit !== null) expect(result.exitCode).toBe(c.exit)
    if (c.code !== null) {
      const lines = (result.stdout as unknown as string[]).map(
        (l) => JSON.parse(l) as { type: string; code?: string },
      )
      expect(lines.filter((l) => l.type === 'error').map((l) => l.code)).toContain(c.code)
    }
  })
})
