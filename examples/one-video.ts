// One video from a storyboard object, with live progress. Without a model this runs the demo model
// (models/demo) on the CPU; pass a converted bundle to get real videos:
//   npm run example examples/one-video.ts -- /path/to/bundle
import { generate } from 'ttt-video'

const model = process.argv[2]
// The demo model draws its synthetic world (docs/demo-world.md); a real model any storyboard.
const storyboard = model
  ? [
      [
        { text: 'A red paper boat drifts down a rain-filled street gutter at dusk.' },
        { text: 'The boat spins in a small whirlpool beside a storm drain.' },
        {
          text: 'Inside the drain, the boat lands on a calm underground stream.',
          requires_scene_transition: true,
        },
      ],
    ]
  : [
      [
        { text: 'A red circle moves right on a navy background.' },
        { text: 'The red circle now moves left.' },
        { text: 'A yellow triangle stays still on a teal background.', requires_scene_transition: true },
      ],
    ]

const run = await generate(storyboard, {
  ...(model ? { model, preset: 'ttt-mlp/9s' } : {}),
  outputDir: 'output/examples',
  onNotice: (message) => console.error(`note: ${message}`),
})
for await (const event of run) {
  if (event.type === 'step' && (event.index + 1) % 5 === 0)
    console.log(`step ${event.index + 1}/${event.total}`)
  if (event.type === 'video.written')
    console.log(`wrote ${event.path}: ${event.frames} frames, ${event.seconds} s`)
}
const result = await run.result
console.log(
  `done in ${result.seconds.toFixed(1)} s; sampling took ${result.videos[0]?.meta.timings ? JSON.stringify((result.videos[0].meta.timings as { sampling_seconds: number }).sampling_seconds) : '?'} s`,
)
