// Converts the public CogVideoX-5b snapshot (transformer/, vae/, text_encoder/, tokenizer/) into a
// TTT-Video model bundle, with progress. Needs the downloaded snapshot:
//   npm run example examples/convert-weights.ts -- /path/to/CogVideoX-5b bundles/ttt-mlp [ttt_mlp|ttt_linear|none]
import { existsSync } from 'node:fs'
import { closeBridge, convert, inspectBundle } from 'ttt-video'

const [from, to = 'bundles/ttt-mlp', ssmLayer = 'ttt_mlp'] = process.argv.slice(2)
if (!from || !existsSync(from)) {
  console.log(
    'pass the path of a downloaded CogVideoX-5b snapshot: npm run example examples/convert-weights.ts -- /path/to/CogVideoX-5b',
  )
  process.exit(0)
}
const run = await convert(from, to, { ssmLayer: ssmLayer as 'ttt_mlp' | 'ttt_linear' | 'none' })
for await (const e of run) {
  if (e.type === 'convert.progress') process.stderr.write(`\rconverting ${e.done}/${e.total} tensors`)
}
const { bundle } = await run.result
const info = await inspectBundle(bundle)
console.log(`\n${bundle}: ${info.complete ? 'complete' : `problems: ${info.problems.join('; ')}`}`)
await closeBridge()
