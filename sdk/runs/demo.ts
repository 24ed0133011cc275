import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { VIDEO_LENGTH_FRAMES } from '../contracts/config/facts.js'
import { readConfigFile } from '../contracts/config/load.js'
import { type ConfigObject, mergeConfigObjects } from '../contracts/config/overrides.js'
import { StoryboardError, WeightsNotFoundError } from '../errors.js'
import { callPython } from '../python/bridge/index.js'
import { packageRoot } from '../python/paths.js'
import { makeDirectory } from './output-dir.js'
import { presetFile } from './presets.js'

// The demo model (what `generate` runs when no model bundle is given): a tiny TTT-MLP model trained on the
// synthetic demo world (docs/demo-world.md), shipped in models/demo. And the tiny random-weight bundle,
// built into the cache, which tests and pipeline checks use because it needs no training.

export const DEMO_SEED = 0
const TINY_BUNDLE_VERSION = 1

/** The shipped trained demo bundle: <package>/models/demo (see its manifest.json). */
export function demoBundlePath(): string {
  return join(packageRoot(), 'models', 'demo')
}

/** The trained demo bundle's path; a WeightsNotFoundError when the package lacks it. */
export async function demoBundle(): Promise<string> {
  const dir = demoBundlePath()
  if (!existsSync(join(dir, 'bundle.json')))
    throw new WeightsNotFoundError(
      `the demo model is missing from ${dir}; reinstall ttt-video, or rebuild it with scripts/train-demo-model.py --out ${dir}`,
    )
  return dir
}

/** Where the tiny random bundle is cached: $TTT_VIDEO_CACHE or ~/.cache/ttt-video. */
export function cacheDir(): string {
  return resolve(process.env.TTT_VIDEO_CACHE ?? join(homedir(), '.cache', 'ttt-video'))
}

export function tinyBundlePath(): string {
  return join(cacheDir(), `tiny-bundle-v${TINY_BUNDLE_VERSION}-seed${DEMO_SEED}`)
}

/** Builds (once) and returns the tiny random-weight bundle (presets tiny/3s, tiny/9s). */
export async function tinyBundle(venvDir?: string, onNotice?: (m: string) => void): Promise<string> {
  const dir = tinyBundlePath()
  if (existsSync(join(dir, 'bundle.json'))) return dir
  onNotice?.(`building the tiny random bundle in ${dir} (once, a few seconds)`)
  makeDirectory(cacheDir(), 'TTT_VIDEO_CACHE')
  await callPython(
    'ttt_video.demo.tiny_bundle.make_tiny_bundle',
    { out: dir, seed: DEMO_SEED },
    venvDir ? { venvDir } : {},
  )
  return dir
}

/** The models that run without a bundle: the trained demo model and the tiny random one. */
export type LocalModel = 'demo' | 'tiny'

/** The config of a local model (presets demo/* or tiny/*) for videos of n segments (12n + 1 latent frames). */
export function demoConfig(n: number, model: LocalModel = 'demo'): ConfigObject {
  const base = readConfigFile(presetFile(`${model}/${n === 3 ? '9s' : '3s'}`))
  const frames = 12 * n + 1
  const length = Object.entries(VIDEO_LENGTH_FRAMES).find(([, f]) => f >= frames)?.[0]
  if (!length)
    throw new StoryboardError([
      { path: 'video[0]', message: `${n} segments is longer than the longest preset (63 s = 21 segments)` },
    ])
  // 24 tokens per latent frame and 24 (demo) or 8 (tiny) text tokens per segment fill the presets' TTT
  // mini-batches (48 demo, 16 tiny) only for odd n; 8-token mini-batches fit every n.
  const miniBatch = n % 2 === 1 ? {} : { mini_batch_size: 8 }
  return mergeConfigObjects(base, {
    eval: { sampling_num_frames: frames },
    model: { video_length: length, ...miniBatch },
  })
}
