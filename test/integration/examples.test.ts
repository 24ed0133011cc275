import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { probe } from '../../sdk/video/index.js'
import { ROOT } from '../helpers.js'

// Every example runs as a user would run it (npm run example FILE), importing the built package.
const cwd = mkdtempSync(join(tmpdir(), 'ttt-examples-'))
const env = { TTT_VIDEO_CACHE: join(cwd, 'cache') }
const example = (file: string, ...args: string[]) =>
  execa(join(ROOT, 'node_modules', '.bin', 'tsx'), [join(ROOT, 'examples', file), ...args], {
    cwd,
    env,
    reject: false,
  })

describe('examples', () => {
  it('one-video.ts makes a 9-second video with the demo model', async () => {
    const r = await example('one-video.ts')
    expect(r.exitCode, r.stderr).toBe(0)
    const path = /wrote (\S+\.mp4)/.exec(r.stdout)?.[1]
    expect(path && existsSync(path)).toBe(true)
    expect((await probe(path!)).frames).toBe(145)
  })

  it('sweep.ts writes a comparison sheet of 2 x 2 cells', async () => {
    const r = await example('sweep.ts')
    expect(r.exitCode, r.stderr).toBe(0)
    const sheet = join(cwd, 'output', 'sweep', 'comparison.png')
    const info = await probe(sheet)
    expect([info.width, info.height]).toEqual([2 * 96, 2 * 64])
  })

  it('fine-tune.ts prepares demo-world clips, trains two stages, exports and generates', async () => {
    const r = await example('fine-tune.ts', '', '', '2')
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/dataset: 8 clips/)
    expect(r.stdout.match(/step \d+: loss \d/g)).toHaveLength(4)
    const path = /wrote (\S+\.mp4)/.exec(r.stdout)?.[1]
    expect(path && existsSync(path)).toBe(true)
  }, 300_000)

  it('multi-gpu.ts and convert-weights.ts say what they need and exit cleanly without it', async () => {
    const gpu = await example('multi-gpu.ts')
    expect(gpu.exitCode).toBe(0)
    expect(gpu.stdout).toMatch(/needs 2 or more CUDA GPUs|pass a model bundle/)
    const convert = await example('convert-weights.ts')
    expect(convert.exitCode).toBe(0)
    expect(convert.stdout).toMatch(/pass the path of a downloaded CogVideoX-5b snapshot/)
  })
})
