// Fine-tuning from TypeScript: clips + annotations -> prepare() -> train() in two stages (3 s, then 9 s from
// the 3 s checkpoint) -> exportBundle() -> generate() with the new bundle.
//   npm run example examples/fine-tune.ts -- ANNOTATIONS.jsonl BUNDLE [STEPS]
// Without arguments it fine-tunes the shipped demo model (models/demo) a few steps further on new clips of
// the demo world (docs/demo-world.md), on the CPU, in about a minute. With a converted CogVideoX-5b bundle, use a GPU
// preset (e.g. `preset: 'ttt-mlp'`) and real step counts.
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { execa } from 'execa'
import { demoBundle, doctor, exportBundle, generate, prepare, type RunEvent, train } from 'ttt-video'

const [annotationsArg, bundleArg, stepsArg] = process.argv.slice(2)
const steps = Number(stepsArg ?? 4)

/** Clips of the demo world, four of 3 s and four of 9 s, written by the Python package's generator. */
async function demoWorldClips(): Promise<string> {
  const python = (await doctor()).python?.python.executable
  if (!python) throw new Error('no Python environment: run `npx ttt-video setup` first')
  const lines: string[] = []
  for (const segments of [1, 3]) {
    const dir = resolve(`output/fine-tune/world-${segments * 3}s`)
    const args = ['--out', dir, '--videos', '4', '--seed', '1', '--segments', `${segments},${segments}`]
    await execa(python, ['-m', 'ttt_video.demo.world', ...args, '--overwrite'])
    for (const line of readFileSync(join(dir, 'annotations.jsonl'), 'utf8').split('\n').filter(Boolean)) {
      const annotation = JSON.parse(line) as { clip: string }
      lines.push(JSON.stringify({ ...annotation, clip: join(dir, annotation.clip) }))
    }
  }
  writeFileSync('output/fine-tune/annotations.jsonl', `${lines.join('\n')}\n`)
  return 'output/fine-tune/annotations.jsonl'
}

function show(event: RunEvent): void {
  if (event.type === 'prepare.clip') console.log(`clip ${event.clip + 1}/${event.total}: ${event.status}`)
  if (event.type === 'stage.started') console.log(`stage ${event.stage}`)
  if (event.type === 'train.step') console.log(`  step ${event.step}: loss ${event.loss?.toFixed(4)}`)
}

const annotations = annotationsArg || (await demoWorldClips())
const model = bundleArg || (await demoBundle())

const runs = 'output/fine-tune/runs' // run directories: events, logs, checkpoints, loss curves
const out = 'output/fine-tune/dataset'
const prepared = await prepare({ annotations, out, model, preset: 'demo/3s', outputDir: runs })
for await (const event of prepared) show(event)
console.log(`dataset: ${(await prepared.result).clips} clips`)

const set = [
  `training.steps=${steps}`,
  'training.warmup_steps=1',
  'training.global_batch_size=4',
  `checkpoint.interval=${steps}`,
]
const run = await train({
  data: out,
  preset: 'demo',
  stages: ['3s', '9s'],
  model,
  set,
  outputDir: runs,
})
for await (const event of run) show(event)
const { stages } = await run.result
for (const s of stages)
  console.log(`${s.stage}: final loss ${s.loss?.toFixed(4)}, loss curve ${s.runDir}/loss.svg`)

const { bundle: tuned } = await exportBundle(stages.at(-1)!.checkpoint, 'output/fine-tune/bundle')
const video = await generate([[{ text: 'A red circle moves up on a navy background.' }]], {
  model: tuned,
  preset: 'demo/3s',
  outputDir: 'output/fine-tune/videos',
})
console.log(`bundle ${tuned}; wrote ${(await video.result).videos[0]?.path}`)
