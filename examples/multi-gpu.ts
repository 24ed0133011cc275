// A multi-GPU run: one process per GPU through torchrun, the videos spread over the processes.
// Needs a machine with 2 or more CUDA GPUs and a converted model bundle:
//   npm run example examples/multi-gpu.ts -- /path/to/bundle [preset]
import { doctor, type EvalPreset, generate } from 'ttt-video'

const [model, preset = 'ttt-mlp/9s'] = process.argv.slice(2)
const report = await doctor()
const gpus = report.python?.torch.gpus?.length ?? 0
if (gpus < 2 || !model) {
  console.log(
    gpus < 2
      ? `this example needs 2 or more CUDA GPUs; this machine has ${gpus}. Nothing to do.`
      : 'pass a model bundle: npm run example examples/multi-gpu.ts -- /path/to/bundle',
  )
  process.exit(0)
}

const run = await generate('examples/storyboards/tom-and-jerry-9s.json', {
  model,
  preset: preset as EvalPreset,
  gpus,
  outputDir: 'output/multi-gpu',
})
for await (const event of run) {
  if (event.type === 'video.written') console.log(`rank ${event.rank} wrote ${event.path}`)
}
console.log(`${(await run.result).videos.length} videos on ${gpus} GPUs`)
