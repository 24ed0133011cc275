import { parse as parseToml, stringify as stringifyToml, TomlError } from 'smol-toml'
import { ConfigError } from '../../errors.js'
import { decodeUtf8, readInputFile } from '../text.js'
import { type ConfigObject, mergeConfigObjects, parseSetArgs } from './overrides.js'
import type { JobConfig } from './schema.js'
import { type RuleOptions, validateConfig } from './validate.js'

export interface ResolveOptions extends RuleOptions {
  /** A TOML file; its values override the defaults. */
  file?: string
  /** A partial config object; overrides the file. */
  overrides?: Record<string, Record<string, unknown>>
  /** `section.field=value` strings (the CLI's --set); override everything else. */
  set?: readonly string[]
}

/** Reads and parses a TOML config file without validating it. Errors name the file, line and column. */
export function readConfigFile(file: string): ConfigObject {
  const fail = (message: string) => new ConfigError([{ path: '', message }], file)
  return parseConfigText(readInputFile(file, 'a TOML file', 'the config file', fail), file)
}

/** Parses TOML bytes or text into a config object, without validating it. */
export function parseConfigText(input: Uint8Array | string, file?: string): ConfigObject {
  let text: string
  if (typeof input === 'string') {
    text = input
  } else {
    const decoded = decodeUtf8(input)
    if (!('text' in decoded)) {
      throw new ConfigError(
        [
          {
            path: '',
            line: decoded.line,
            column: decoded.column,
            message: `not valid UTF-8 (byte ${decoded.badByte}); save the file as UTF-8`,
          },
        ],
        file,
      )
    }
    text = decoded.text
  }
  if (text.trim() === '') throw new ConfigError([{ path: '', message: 'the config file is empty' }], file)
  try {
    return parseToml(text) as ConfigObject
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0]?.replace(/^Invalid TOML document: /, '') ?? 'invalid TOML'
      throw new ConfigError(
        [{ path: '', line: e.line, column: e.column, message: `invalid TOML: ${first}` }],
        file,
      )
    }
    throw e
  }
}

/** defaults < file < overrides < --set, then validation. */
export function resolveConfig(options: ResolveOptions = {}): JobConfig {
  const fromFile = options.file ? readConfigFile(options.file) : undefined
  const fromSet = options.set && options.set.length > 0 ? parseSetArgs(options.set) : undefined
  const merged = mergeConfigObjects(fromFile, options.overrides, fromSet)
  if (options.file) merged.job = { ...(merged.job ?? {}), config_file: options.file }
  return validateConfig(merged, options)
}

/** The config as TOML (fields that are null are left out, which reads back as their default). */
export function configToToml(config: JobConfig): string {
  return stringifyToml(config)
}
