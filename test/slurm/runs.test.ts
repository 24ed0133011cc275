import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa, execaSync } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunEvent } from '../../sdk/contracts/events.js'
import { CancelledError } from '../../sdk/errors.js'
import type { Run } from '../../sdk/launch/run.js'
import { venvPython } from '../../sdk/python/paths.js'
import { tinyBundle } from '../../sdk/runs/demo.js'
import { generate } from '../../sdk/runs/generate.js'
import { prepare } from '../../sdk/runs/prepare.js'
import type { SlurmOptions } from '../../sdk/runs/slurm.js'
import { train } from '../../sdk/runs/train.js'
import { alive, descendants, ROOT } from '../helpers.js'
import { type SlurmCluster, startSlurm, stopSlurm } from './cluster.js'

// generate() and train() through sbatch on a real one-node Slurm cluster (scripts/slurm-local): the
// launcher submits, follows events.jsonl in the run directory, and cancels with scancel.
const work = mkdtempSync(join(tmpdir(), 'ttt-slurm-runs-'))
const PYTHON = venvPython(join(ROOT, '.venv'))
const cpu: SlurmOptions = { gpus: false, gpusPerNode: 1 }
let cluster: SlurmCluster
let bundle: string

async function events(run: Run<unknown>): Promise<RunEvent[]> {
  const all: RunEvent[] = []
  for await (const e of run) all.push(e)
  return all
}

/** Python processes started (directly or not) by slurmd: the job's processes, wherever they run. */
function jobPythons(): number[] {
  const daemons = execaSync('pgrep', ['-x', 'slurmstepd'], { reject: false })
    .stdout.split('\n')
    .filter(Boolean)
  return daemons.flatMap((pid) => descendants(Number(pid))).filter((pid) => alive(pid))
}

describe('runs on Slurm', () => {
  beforeAll(async () => {
    cluster = await startSlurm()
    bundle = await tinyBundle()
  })
  afterAll(async () => {
    await stopSlurm()
    rmSync(work, { recursive: true, force: true })
  })
  const env = () => (cluster.available ? cluster.env : {})

  it('generates a tiny video through sbatch', async (ctx) => {
    if (!cluster.available) return ctx.skip(cluster.reason)
    const run = await generate([[{ text: 'a red boat on a lake' }]], {
      overrides: { eval: { num_denoising_steps: 2 } },
      outputDir: join(work, 'videos'),
      slurm: cpu,
      env: env(),
    })
    const all = await events(run)
    expect(all[0]?.type).toBe('run.started')
    const result = await run.result
    expect(existsSync(result.videos[0]!.path)).toBe(true)
    expect(existsSync(join(result.runDir, 'slurm.sbatch'))).toBe(true)
  }, 300_000)

  it('prepares data and trains 2 steps through sbatch', async (ctx) => {
    if (!cluster.available) return ctx.skip(cluster.reason)
    const world = join(work, 'world')
    await execa(
      PYTHON,
      ['-m', 'ttt_video.demo.world', '--out', world, '--videos', '2', '--seed', '1', '--segments', '1,1'],
      {
        cwd: join(ROOT, 'python'),
      },
    )
    const data = join(work, 'dataset')
    const common = { model: bundle, outputDir: join(work, 'runs'), slurm: cpu, env: env() }
    await (
      await prepare({
        annotations: join(world, 'annotations.jsonl'),
        out: data,
        preset: 'tiny/3s',
        ...common,
      })
    ).result
    const set = [
      'training.steps=2',
      'training.warmup_steps=1',
      'checkpoint.interval=2',
      'training.global_batch_size=1',
    ]
    const run = await train({ data, preset: 'tiny/3s', set, ...common })
    const steps = (await events(run)).filter((e) => e.type === 'train.step')
    expect(steps.map((e) => e.step)).toEqual([1, 2])
    expect(existsSync(join((await run.result).stages[0]!.checkpoint, 'COMPLETE'))).toBe(true)
  }, 600_000)

  it('cancelling the run scancels the job and leaves no process', async (ctx) => {
    if (!cluster.available) return ctx.skip(cluster.reason)
    const controller = new AbortController()
    const run = await generate([[{ text: 'a slow boat' }]], {
      overrides: { eval: { num_denoising_steps: 500 } },
      outputDir: join(work, 'cancelled'),
      slurm: cpu,
      env: env(),
      signal: controller.signal,
    })
    for await (const e of run) if (e.type === 'step') break
    expect(jobPythons().length).toBeGreaterThan(0)
    controller.abort()
    await expect(run.result).rejects.toBeInstanceOf(CancelledError)
    for (let i = 0; i < 100 && jobPythons().length > 0; i++) await new Promise((r) => setTimeout(r, 100))
    expect(jobPythons()).toEqual([])
  }, 300_000)
})
