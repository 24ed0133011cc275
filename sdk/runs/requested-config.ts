import { readConfigFile } from '../contracts/config/load.js'
import { type ConfigObject, mergeConfigObjects, parseSetArgs } from '../contracts/config/overrides.js'
import type { JobConfigInput } from '../contracts/config/schema.js'
import { schemaIssues } from '../contracts/config/validate.js'
import { ConfigError } from '../errors.js'
import { type PresetKind, presetFile } from './presets.js'

/** A partial config: every section optional, every field optional and of its own type. */
export type ConfigOverrides = { [S in keyof JobConfigInput]?: Partial<Exclude<JobConfigInput[S], undefined>> }

/** How a run's options name its config (generate, prepare; train adds stages). */
export interface ConfigSource {
  /** A TOML config file, or a partial config object. */
  config?: string | ConfigOverrides
  /** A shipped preset (configs/eval/<preset>.toml for sampling, configs/train/<preset>.toml otherwise). */
  preset?: string
  /** A partial config object applied over the config (`{ eval: { num_denoising_steps: 20 } }`). */
  overrides?: ConfigOverrides
  /** `section.field=value` strings, applied last (the CLI's --set). */
  set?: readonly string[]
}

/**
 * The config the user asked for: `base` (the file, preset or config object) and `raw` (with the
 * overrides and --set applied), checked field by field before anything else.
 */
export function requestedConfig(
  options: ConfigSource,
  kind: PresetKind,
): { base: ConfigObject | undefined; raw: ConfigObject; file?: string } {
  if (options.config !== undefined && options.preset !== undefined)
    throw new ConfigError([{ path: 'config', message: 'give either config or preset, not both' }])
  const file =
    typeof options.config === 'string' ? options.config : options.preset && presetFile(options.preset, kind)
  const base = file ? readConfigFile(file) : (options.config as ConfigObject | undefined)
  const fromSet = options.set && options.set.length > 0 ? parseSetArgs(options.set) : undefined
  const raw = mergeConfigObjects(base, options.overrides as ConfigObject | undefined, fromSet)
  const issues = schemaIssues(raw)
  if (issues.length > 0) throw new ConfigError(issues, file)
  if (typeof options.config === 'string') raw.job = { ...(raw.job ?? {}), config_file: options.config }
  return { base, raw, ...(file ? { file } : {}) }
}
