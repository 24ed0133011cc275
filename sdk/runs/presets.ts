import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../errors.js'
import { packageRoot } from '../python/paths.js'

// The shipped presets: configs/eval/<name>.toml (sampling) and configs/train/<name>.toml (training).

export type PresetKind = 'eval' | 'train'

/** The shipped presets of a kind: "ttt-mlp/9s", "cogvideox/3s", "tiny/3s", ... */
export function listPresets(kind: PresetKind = 'eval'): string[] {
  const root = join(packageRoot(), 'configs', kind)
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) =>
      readdirSync(join(root, d.name))
        .filter((f) => f.endsWith('.toml'))
        .map((f) => `${d.name}/${f.slice(0, -5)}`),
    )
    .sort()
}

/** The TOML file of a preset; a ConfigError lists the presets when there is no such one. */
export function presetFile(preset: string, kind: PresetKind = 'eval'): string {
  const file = join(packageRoot(), 'configs', kind, `${preset}.toml`)
  if (!/^[\w-]+\/[\w-]+$/.test(preset) || !existsSync(file)) {
    throw new ConfigError([
      { path: 'preset', message: `unknown preset "${preset}"; available: ${listPresets(kind).join(', ')}` },
    ])
  }
  return file
}
