import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { VIDEO_LENGTH_FRAMES } from '../contracts/config/facts.js'
import { readConfigFile } from '../contracts/config/load.js'
import { type ConfigObject, mergeConfigObjects } from '../contracts/config/overrides.js'
import { StoryboardError } from '../errors.js'
import { callPython } from '../python/bridge/index.js'
import { makeDirectory } from './output-dir.js'
import { presetFile } from './presets.js'

// The demo model: what `generate` runs when no model bundle is given.

export const DEMO_SEED = 0
const DEMO_BUNDLE_VERSION = 1

/** Where the demo bundle is cached: $TTT_VIDEO_CACHE or ~/.cache/ttt-video. */
export function cacheDir(): string {
  return resolve(process.env.TTT_VIDEO_CACHE ?? join(homedir(), '.cache', 'ttt-video'))
}

export function demoBundlePath(): string {
  return join(cacheDir(), `tiny-bundle-v${DEMO_BUNDLE_VERSION}-seed${DEMO_SEED}`)
}

/** Builds (once) and returns the tiny random-weight demo bundle. */
export async function demoBundle(venvDir?: string, onNotice?: (m: string) => void): Promise<string> {
  const dir = demoBundlePath()
  if (existsSync(join(dir, 'bundle.json'))) return dir
  onNotice?.(`building the tiny demo bundle in ${dir} (once, a few seconds)`)
  makeDirectory(cacheDir(), 'TTT_VIDEO_CACHE')
  await callPython(
    'ttt_video.demo.tiny_bundle.make_tiny_bundle',
    { out: dir, seed: DEMO_SEED },
    venvDir ? { venvDir } : {},
  )
  return dir
}

/** The tiny demo config for videos of n segments (3 s per segment). */
export function demoConfig(n: number): ConfigObject {
  const base = readConfigFile(presetFile(n === 3 ? 'tiny/9s' : 'tiny/3s'))
  const frames = 12 * n + 1
  const length = Object.entries(VIDEO_LENGTH_FRAMES).find(([, f]) => f >= frames)?.[0]
  if (!length)
    throw new StoryboardError([
      { path: 'video[0]', message: `${n} segments is longer than the longest preset (63 s = 21 segments)` },
    ])
  // 8 text tokens and 24 tokens per frame fill 16-token TTT mini-batches only for odd n (296n + 24);
  // 8-token mini-batches fit every n.
  const miniBatch = n % 2 === 1 ? {} : { mini_batch_size: 8 }
  return mergeConfigObjects(base, {
    eval: { sampling_num_frames: frames },
    model: { video_length: length, ...miniBatch },
  })
}
