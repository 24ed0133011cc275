import { describe, expect, it } from 'vitest'
import type { HttpError } from '../../sdk/server/problem.js'
import { DEMO_BUNDLE, validateRequest } from '../../sdk/server/validate.js'

// The server's "demo" bundle is the shipped demo model (models/demo): it takes the demo presets or none,
// and says so for any other preset or model size (a 422 naming the field), before anything runs.

const ctx = {
  bundles: { demo: DEMO_BUNDLE },
  defaultBundle: 'demo',
  limits: { maxVideos: 4, maxTextChars: 500 },
  venvDir: undefined,
  slot: { index: 0, gpus: undefined, env: {} },
}
const storyboards = [[{ text: 'A red circle moves right on a navy background.' }]]

async function issues(body: object) {
  const error = (await validateRequest(body, ctx).catch((e: unknown) => e)) as HttpError
  expect(error.status).toBe(422)
  return error.issues?.map((i) => i.path)
}

describe('the demo bundle on the server', () => {
  it('runs without a preset and with the demo presets', async () => {
    await expect(validateRequest({ storyboards }, ctx)).resolves.toMatchObject({ bundle: 'demo' })
    await expect(validateRequest({ storyboards, preset: 'demo/3s', seed: 3 }, ctx)).resolves.toMatchObject({
      seed: 3,
    })
  })

  it('refuses other presets and model sizes, naming the field', async () => {
    expect(await issues({ storyboards, preset: 'tiny/3s' })).toEqual(['preset'])
    expect(await issues({ storyboards, preset: 'ttt-mlp/3s' })).toEqual(['preset'])
    expect(await issues({ storyboards, overrides: { model: { size: 'tiny' } } })).toEqual([
      'overrides.model.size',
    ])
  })
})
