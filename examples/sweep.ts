// A sweep over guidance scales and step counts on one storyboard, ending in one comparison sheet: a grid
// with a row per guidance scale and a column per step count, each cell the middle frame of that video.
//   npm run example examples/sweep.ts [-- /path/to/bundle]
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { findFfmpeg, generate, poster } from 'ttt-video'

const model = process.argv[2]
const scales = [1, 6]
const steps = [2, 6]
const storyboard = [[{ text: 'A golden retriever puppy chases soap bubbles across a sunny lawn.' }]]
const out = 'output/sweep'
mkdirSync(out, { recursive: true })

const cells: string[] = []
for (const scale of scales) {
  for (const count of steps) {
    const run = await generate(storyboard, {
      ...(model ? { model, preset: 'ttt-mlp/3s' } : {}),
      outputDir: out,
      overrides: { guider: { scale, schedule: 'constant' }, eval: { num_denoising_steps: count } },
    })
    const [video] = (await run.result).videos
    const frame = await poster(video!.path, {
      time: video!.seconds / 2,
      out: join(out, `scale-${scale}-steps-${count}.png`),
    })
    console.log(`guidance ${scale}, ${count} steps -> ${video!.path}`)
    cells.push(frame)
  }
}

// Tile the posters with ffmpeg's xstack: row = guidance scale, column = step count.
const { ffmpeg } = await findFfmpeg()
const layout = cells.map(
  (_, i) =>
    `${(i % steps.length) === 0 ? '0' : Array.from({ length: i % steps.length }, () => 'w0').join('+')}_${Math.floor(i / steps.length) === 0 ? '0' : Array.from({ length: Math.floor(i / steps.length) }, () => 'h0').join('+')}`,
)
const sheet = join(out, 'comparison.png')
await execa(ffmpeg, [
  '-hide_banner',
  '-loglevel',
  'error',
  '-y',
  ...cells.flatMap((c) => ['-i', c]),
  '-filter_complex',
  `${cells.map((_, i) => `[${i}:v]`).join('')}xstack=inputs=${cells.length}:layout=${layout.join('|')}`,
  '-frames:v',
  '1',
  sheet,
])
console.log(
  `comparison sheet (rows: guidance ${scales.join(', ')}; columns: ${steps.join(', ')} steps): ${sheet}`,
)
