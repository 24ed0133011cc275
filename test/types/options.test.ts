import { describe, expect, it } from 'vitest'
import type { GenerateOptions, PrepareOptions, TrainOptions } from '../../sdk/index.js'

// Compile-time tests: `npm run typecheck` (tsc) fails when a line marked @ts-expect-error compiles, so
// each marked line is a typo or wrong type a user must not be able to write. The runtime test below only
// keeps vitest from calling the file empty.

const accepted: GenerateOptions[] = [
  { preset: 'ttt-mlp/9s' },
  { overrides: { eval: { num_denoising_steps: 20, image_width: 96 }, guider: { scale: 6 } } },
  { config: { model: { size: 'tiny' } } },
]

const refused: GenerateOptions[] = [
  // @ts-expect-error no such preset (presets are a union of the shipped names)
  { preset: 'ttt-mlp/99s' },
  // @ts-expect-error a training preset is not a sampling preset
  { preset: 'tiny/18s' },
  // @ts-expect-error a misspelt field of a section
  { overrides: { eval: { num_denoising_step: 20 } } },
  // @ts-expect-error a number field given as a string
  { overrides: { eval: { image_width: '96' } } },
  // @ts-expect-error an unknown section
  { overrides: { evals: {} } },
  // @ts-expect-error a wrong enum value
  { overrides: { model: { ssm_layer: 'ttt_mlpp' } } },
]

const trainAccepted: Partial<TrainOptions>[] = [
  { preset: 'ttt-mlp', stages: ['3s', '9s'] },
  { preset: 'tiny/3s' },
]

const trainRefused: Partial<TrainOptions>[] = [
  // @ts-expect-error stages are names, not numbers
  { stages: [3, 9] },
  // @ts-expect-error no such preset family
  { preset: 'ttt-mpl' },
]

const prepareRefused: Partial<PrepareOptions>[] = [
  // @ts-expect-error a sampling-only preset name that no training preset has
  { preset: 'cogvideox/3s' },
]

describe('option types', () => {
  it('are checked by tsc (npm run typecheck)', () => {
    expect(accepted).toHaveLength(3)
    expect(refused.length + trainRefused.length + prepareRefused.length).toBe(9)
    expect(trainAccepted).toHaveLength(2)
  })
})
