import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { beforeAll, describe, expect, it } from 'vitest'
import { readConfigFile } from '../../sdk/contracts/config/load.js'
import type { RunEvent } from '../../sdk/contracts/events.js'
import { ConfigError, DataError, WeightsNotFoundError } from '../../sdk/errors.js'
import type { Run } from '../../sdk/launch/run.js'
import { venvPython } from '../../sdk/python/paths.js'
import { tinyBundle } from '../../sdk/runs/demo.js'
import { exportBundle } from '../../sdk/runs/export.js'
import { generate } from '../../sdk/runs/generate.js'
import { prepare } from '../../sdk/runs/prepare.js'
import { train } from '../../sdk/runs/train.js'
import { ROOT } from '../helpers.js'

// Fine-tuning from TypeScript, end to end with real Python: demo-world clips -> prepare() -> train() in
// two stages (3 s, then 9 s from its checkpoint) -> exportBundle() -> generate() with the new bundle.
const tmp = mkdtempSync(join(tmpdir(), 'ttt-train-'))
const PYTHON = venvPython(join(ROOT, '.venv'))
const world = join(tmp, 'world')
const dataset = join(tmp, 'dataset')
const quick = [
  'training.steps=2',
  'training.warmup_steps=1',
  'checkpoint.interval=2',
  'training.global_batch_size=1',
]
let bundle: string

async function collect(run: Run<unknown>): Promise<RunEvent[]> {
  const events: RunEvent[] = []
  for await (const e of run) events.push(e)
  return events
}

describe('prepare(), train() and exportBundle()', () => {
  beforeAll(async () => {
    bundle = await tinyBundle()
    // six clips of one segment (3 s) or three (9 s), with their annotations
    await execa(
      PYTHON,
      ['-m', 'ttt_video.demo.world', '--out', world, '--videos', '6', '--seed', '3', '--segments', '1,3'],
      {
        cwd: join(ROOT, 'python'),
      },
    )
  }, 120_000)

  it('prepare() encodes every clip once; a second run skips them all', async () => {
    const options = {
      annotations: join(world, 'annotations.jsonl'),
      out: dataset,
      model: bundle,
      preset: 'tiny/3s' as const,
    }
    const first = await prepare({ ...options, outputDir: join(tmp, 'runs') })
    const events = await collect(first)
    const clipEvents = events.filter((e) => e.type === 'prepare.clip')
    expect(clipEvents.map((e) => e.status)).toEqual(Array(6).fill('encoded'))
    expect((await first.result).clips).toBe(6)
    expect(first.progress()).toMatchObject({ done: 6, total: 6, finished: true })
    const again = await prepare({ ...options, outputDir: join(tmp, 'runs') })
    const skipped = (await collect(again)).filter((e) => e.type === 'prepare.clip')
    expect(skipped.map((e) => e.status)).toEqual(Array(6).fill('skipped'))
  }, 300_000)

  it('a bad annotation line fails before any clip is encoded, naming the line', async () => {
    const bad = join(tmp, 'bad.jsonl')
    await execa('sh', ['-c', `printf '{"clip": "missing.mp4", "segments": []}\\n' > ${bad}`])
    const run = await prepare({
      annotations: bad,
      out: join(tmp, 'bad-dataset'),
      model: bundle,
      preset: 'tiny/3s',
      outputDir: join(tmp, 'runs'),
    })
    const error = await run.result.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DataError)
    expect((error as DataError).issues.some((i) => i.line === 1)).toBe(true)
    expect(existsSync(join(tmp, 'bad-dataset', 'manifest.jsonl'))).toBe(false)
  }, 120_000)

  it("trains two stages, the second from the first one's final checkpoint, then exports a bundle that generates", async () => {
    const run = await train({
      data: dataset,
      preset: 'tiny',
      stages: ['3s', '9s'],
      model: bundle,
      set: quick,
      outputDir: join(tmp, 'runs'),
    })
    const events = await collect(run)
    const result = await run.result
    expect(result.stages.map((s) => [s.stage, s.steps])).toEqual([
      ['3s', 2],
      ['9s', 2],
    ])
    for (const stage of result.stages) {
      expect(Number.isFinite(stage.loss)).toBe(true)
      expect(existsSync(join(stage.checkpoint, 'COMPLETE'))).toBe(true)
      expect(readFileSync(join(stage.runDir, 'loss.svg'), 'utf8')).toMatch(/^<svg/)
    }
    const second = readConfigFile(join(result.stages[1]!.runDir, 'config.toml'))
    expect(second.checkpoint?.init_state_dir).toBe(result.stages[0]!.checkpoint)
    expect(events.filter((e) => e.type === 'train.step')).toHaveLength(4)
    expect(events.filter((e) => e.type === 'stage.started').map((e) => e.stage)).toEqual(['3s', '9s'])

    const exported = await exportBundle(result.stages[1]!.checkpoint, join(tmp, 'fine-tuned'))
    const video = await generate([[{ text: 'A red circle moves up on a navy background.' }]], {
      model: exported.bundle,
      preset: 'tiny/3s',
      overrides: { eval: { num_denoising_steps: 2 } },
      outputDir: join(tmp, 'videos'),
    })
    expect((await video.result).videos[0]?.path).toMatch(/video\.mp4$/)
  }, 600_000)

  it('refuses bad training inputs before starting anything', async () => {
    await expect(train({ data: join(tmp, 'nowhere'), preset: 'tiny/3s', model: bundle })).rejects.toThrow(
      ConfigError,
    )
    await expect(train({ data: dataset, stages: ['3s'], model: bundle })).rejects.toThrow(
      /stages need a preset/,
    )
    await expect(train({ data: dataset, preset: 'tiny/3s', init: tmp })).rejects.toThrow(WeightsNotFoundError)
    await expect(exportBundle(join(tmp, 'no-checkpoint'), join(tmp, 'x'))).rejects.toThrow(
      /no COMPLETE marker/,
    )
    rmSync(join(tmp, 'x'), { recursive: true, force: true })
  })
})
