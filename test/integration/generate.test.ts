import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { beforeAll, describe, expect, it } from 'vitest'
import type { RunEvent } from '../../sdk/contracts/events.js'
import { CancelledError, DistributedError, StoryboardError, WeightsNotFoundError } from '../../sdk/errors.js'
import type { Run } from '../../sdk/launch/run.js'
import { venvPython } from '../../sdk/python/paths.js'
import { generate } from '../../sdk/runs/generate.js'
import { probe } from '../../sdk/video/index.js'
import { alive, descendants, ROOT } from '../helpers.js'

// Real Python, real torchrun, the shipped demo model: no mocks.
const tmp = mkdtempSync(join(tmpdir(), 'ttt-generate-'))
process.env.TTT_VIDEO_CACHE = join(tmp, 'cache')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const PYTHON = venvPython(join(ROOT, '.venv'))
const STORYBOARD_9S = join(ROOT, 'examples', 'storyboards', 'tom-and-jerry-9s.json')
const fast = (steps: number) => ({ eval: { num_denoising_steps: steps } })
const oneSegment = (n: number) => Array.from({ length: n }, (_, i) => [{ text: `a red boat, take ${i}` }])

async function collect(run: Run<unknown>): Promise<RunEvent[]> {
  const events: RunEvent[] = []
  for await (const e of run) events.push(e)
  return events
}

async function framesDigest(path: string): Promise<string> {
  const code =
    'import av, hashlib, sys\nh = hashlib.sha256()\nwith av.open(sys.argv[1]) as c:\n    for f in c.decode(c.streams.video[0]):\n        h.update(f.to_ndarray(format="rgb24").tobytes())\nprint(h.hexdigest())'
  return (await execa(PYTHON, ['-c', code, path])).stdout.trim()
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

async function waitFor(run: Run<unknown>, predicate: (e: RunEvent) => boolean): Promise<RunEvent> {
  for await (const e of run) if (predicate(e)) return e
  throw new Error('the run ended before the awaited event')
}

describe('generate()', () => {
  beforeAll(async () => {
    // the shipped demo model, which runs when no model is given, is there
    await (await import('../../sdk/runs/demo.js')).demoBundle()
  })

  it('makes a 3-second video from a storyboard object; events arrive in order and validate', async () => {
    const run = await generate(oneSegment(1), { outputDir: join(tmp, 'a'), overrides: fast(3) })
    const events = await collect(run)
    const result = await run.result
    expect(events[0]?.type).toBe('run.started')
    expect(events.at(-1)?.type).toBe('run.finished')
    const steps = events.filter((e) => e.type === 'step')
    expect(steps.map((s) => s.index)).toEqual([0, 1, 2])
    const order = events.map((e) => e.type)
    expect(order.indexOf('video.started')).toBeLessThan(order.indexOf('step'))
    expect(order.indexOf('video.written')).toBeGreaterThan(order.lastIndexOf('decode.window'))
    expect(result.videos).toHaveLength(1)
    const info = await probe(result.videos[0]!.path)
    expect([info.frames, info.fps, info.width, info.height, info.codec]).toEqual([49, 16, 96, 64, 'h264'])
    expect(result.videos[0]!.prompts).toEqual(['a red boat, take 0'])
    expect(result.loadSeconds.transformer).toBeGreaterThanOrEqual(0)
  })

  it('makes two 9-second videos from a storyboard file', async () => {
    const run = await generate(STORYBOARD_9S, { outputDir: join(tmp, 'b'), overrides: fast(2) })
    const result = await run.result
    expect(result.videos.map((v) => v.index)).toEqual([0, 1])
    for (const video of result.videos) {
      const info = await probe(video.path)
      expect([info.frames, info.fps]).toEqual([145, 16])
    }
    // video 0 cuts before segments 1 and 2; video 1 only before segment 2
    expect(result.videos[0]!.prompts[1]?.startsWith('<start_scene>')).toBe(true)
    expect(result.videos[1]!.prompts.map((p) => p.startsWith('<start_scene>'))).toEqual([false, false, true])
  })

  it('the CLI generates with --json and exits 0', async () => {
    const r = await execa(
      'node',
      [
        CLI,
        'generate',
        STORYBOARD_9S,
        '--json',
        '--out',
        join(tmp, 'c'),
        '--set',
        'eval.num_denoising_steps=2',
      ],
      {
        reject: false,
        env: { TTT_VIDEO_CACHE: process.env.TTT_VIDEO_CACHE! },
      },
    )
    expect(r.exitCode, r.stderr).toBe(0)
    const lines = r.stdout
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; videos?: { path: string }[] })
    expect(lines[0]?.type).toBe('run.started')
    const result = lines.at(-1)!
    expect(result.type).toBe('result')
    expect(result.videos?.map((v) => existsSync(v.path))).toEqual([true, true])
    expect(r.stderr).toMatch(/using the demo model, trained on the synthetic demo world/)
  })

  it('fails before any Python starts on a bad storyboard, config or bundle', async () => {
    const out = join(tmp, 'd')
    await expect(generate([[{ text: '' }]], { outputDir: out })).rejects.toBeInstanceOf(StoryboardError)
    await expect(
      generate(oneSegment(1), { outputDir: out, set: ['eval.sampling_num_frames=14'] }),
    ).rejects.toThrow(/eval.sampling_num_frames/)
    await expect(
      generate(oneSegment(1), { outputDir: out, model: join(tmp, 'no-such-bundle') }),
    ).rejects.toBeInstanceOf(WeightsNotFoundError)
    await expect(generate(oneSegment(1), { outputDir: out, preset: 'ttt-mlp/3s' })).rejects.toBeInstanceOf(
      WeightsNotFoundError,
    )
    await expect(generate(oneSegment(1), { outputDir: out, gpus: 0 })).rejects.toThrow(/positive integer/)
    expect(existsSync(out)).toBe(false)
  })

  it('cancel() during sampling under torchrun rejects within 5 s and leaves no process behind', async () => {
    const run = await generate(oneSegment(2), { outputDir: join(tmp, 'e'), overrides: fast(200), gpus: 2 })
    await waitFor(run, (e) => e.type === 'step')
    const tree = [run.pid!, ...descendants(run.pid!)]
    expect(tree.length).toBeGreaterThanOrEqual(3) // torchrun and its two workers
    const started = performance.now()
    run.cancel('test')
    await expect(run.result).rejects.toBeInstanceOf(CancelledError)
    expect(performance.now() - started).toBeLessThan(5000)
    await new Promise((r) => setTimeout(r, 200))
    expect(tree.filter(alive)).toEqual([])
  })

  it('an AbortSignal cancels too', async () => {
    const controller = new AbortController()
    const run = await generate(oneSegment(1), {
      outputDir: join(tmp, 'f'),
      overrides: fast(200),
      signal: controller.signal,
    })
    await waitFor(run, (e) => e.type === 'step')
    controller.abort('user')
    await expect(run.result).rejects.toThrow(/cancelled \(user\)/)
  })

  it('a cancelled run resumes in its run directory, skipping the finished video', async () => {
    const runDir = join(tmp, 'resume')
    const videos = oneSegment(2)
    const first = await generate(videos, { runDir, overrides: fast(30) })
    await waitFor(first, (e) => e.type === 'video.finished')
    first.cancel('test')
    await expect(first.result).rejects.toBeInstanceOf(CancelledError)
    // the earlier attempt's error event is not this attempt's
    const second = await generate(videos, { runDir, overrides: fast(30) })
    const events = await collect(second)
    expect(events.filter((e) => e.type === 'video.skipped').map((e) => e.video)).toEqual([0])
    expect(events.filter((e) => e.type === 'video.started').map((e) => e.video)).toEqual([1])
    expect((await second.result).videos.map((v) => v.index)).toEqual([0, 1])
  })

  it('refuses a run directory that holds another run, naming what differs, and leaves it as it was', async () => {
    const runDir = join(tmp, 'reuse')
    const a = oneSegment(1)
    await (await generate(a, { runDir, overrides: fast(2) })).result
    const config = readFileSync(join(runDir, 'config.toml'), 'utf8')
    const other = [[{ text: 'another storyboard' }]]
    await expect(generate(other, { runDir, overrides: fast(2) })).rejects.toThrow(
      /storyboards of video 0 differ/,
    )
    await expect(generate(a, { runDir, overrides: fast(3) })).rejects.toThrow(
      /eval.num_denoising_steps is 2 there and 3 now/,
    )
    await expect(generate(a, { runDir, overrides: fast(2), seed: 7 })).rejects.toThrow(
      /job.seed is 42 there and 7 now/,
    )
    // the compute dtype changes the numbers: not a free field, even though the layout fields are
    const bf16 = {
      eval: { num_denoising_steps: 2 },
      parallelism: { fsdp_unsharded_dtype: 'bfloat16' as const },
    }
    await expect(generate(a, { runDir, overrides: bf16 })).rejects.toThrow(
      /parallelism.fsdp_unsharded_dtype is "?float32"? there and "?bfloat16"? now/,
    )
    expect(readFileSync(join(runDir, 'config.toml'), 'utf8')).toBe(config)
    const again = await collect(await generate(a, { runDir, overrides: fast(2) }))
    expect(again.filter((e) => e.type === 'video.skipped').map((e) => e.video)).toEqual([0])
  })

  it('the demo model takes any number of segments (6 s: even, 8-token mini-batches)', async () => {
    const run = await generate([[{ text: 'a' }, { text: 'b', requires_scene_transition: true }]], {
      outputDir: join(tmp, 'six'),
      overrides: fast(2),
    })
    expect((await run.result).videos[0]!.frames).toBe(97)
  })

  it('a killed worker gives DistributedError', async () => {
    const run = await generate(oneSegment(2), { outputDir: join(tmp, 'g'), overrides: fast(200), gpus: 2 })
    await waitFor(run, (e) => e.type === 'step' && e.rank === 1)
    const worker = descendants(run.pid!).find((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('RANK=1')
      } catch {
        return false
      }
    })
    expect(worker).toBeDefined()
    process.kill(worker!, 'SIGKILL')
    const error = await run.result.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DistributedError)
    expect((error as DistributedError).logTail.length).toBeGreaterThan(0)
  })

  // Equal by construction: every process computes with one thread (the thread count changes the order of
  // floating-point sums), each video is computed by one process whatever the layout, and the encoder is
  // deterministic. So the frames are compared bit for bit.
  it('--gpus 2 (CPU processes) and two nodes on loopback (c10d) make the same videos as one process', async () => {
    const videos = oneSegment(4)
    const env = { OMP_NUM_THREADS: '1' }
    const single = await (await generate(videos, { outputDir: join(tmp, 'h'), overrides: fast(2), env }))
      .result
    const twoGpus = await (
      await generate(videos, { outputDir: join(tmp, 'h2'), overrides: fast(2), gpus: 2, env })
    ).result
    expect(twoGpus.videos.map((v) => v.index)).toEqual([0, 1, 2, 3])
    for (let i = 0; i < 4; i++) {
      expect(await framesDigest(twoGpus.videos[i]!.path)).toBe(await framesDigest(single.videos[i]!.path))
    }
    const port = await freePort()
    const runDir = join(tmp, 'two-nodes')
    const node = (nodeRank: number) =>
      generate(videos, {
        runDir,
        overrides: fast(2),
        nnodes: 2,
        nodeRank,
        nprocPerNode: 1,
        rdzvEndpoint: `127.0.0.1:${port}`,
        rdzvId: 'two-node-test',
        env,
      })
    const [a, b] = await Promise.all([node(0), node(1)])
    const [ra, rb] = await Promise.all([a.result, b.result])
    expect(ra.videos.map((v) => v.index)).toEqual([0, 1, 2, 3])
    expect(rb.videos.map((v) => v.index)).toEqual([0, 1, 2, 3])
    for (let i = 0; i < 4; i++) {
      expect(await framesDigest(ra.videos[i]!.path)).toBe(await framesDigest(single.videos[i]!.path))
    }
  })
})
