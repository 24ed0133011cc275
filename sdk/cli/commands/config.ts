import { configToToml, resolveConfig } from '../../contracts/config/load.js'
import { jobConfigJsonSchema } from '../../contracts/config/schema.js'
import { TttVideoError } from '../../errors.js'
import { presetFile } from '../../runs/presets.js'
import { type Command, err, type Flags, intFlag, out, UsageError } from '../flags.js'

export const CONFIG_FLAGS = {
  preset: { type: 'string' },
  set: { type: 'string', multiple: true },
  'world-size': { type: 'string' },
  'check-paths': { type: 'boolean' },
  json: { type: 'boolean' },
} as const

/** The config a command's FILE (or --preset) and --set flags describe, validated. */
export function configFromFlags(file: string | undefined, values: Flags) {
  if (file && values.preset) throw new UsageError('give a config FILE or --preset, not both')
  const worldSize = intFlag(values['world-size'], 'world-size', 1)
  const source = file ?? (values.preset ? presetFile(values.preset as string) : undefined)
  return resolveConfig({
    ...(source ? { file: source } : {}),
    set: (values.set as string[] | undefined) ?? [],
    ...(worldSize !== undefined ? { worldSize } : {}),
    checkPaths: values['check-paths'] === true,
  })
}

function validate(files: string[], values: Flags): number {
  let failed = 0
  for (const file of files) {
    try {
      configFromFlags(file, values)
      out(values.json ? JSON.stringify({ file, ok: true }) : `${file}: ok`)
    } catch (e) {
      if (!(e instanceof TttVideoError)) throw e
      const issues = 'issues' in e ? e.issues : []
      if (values.json) out(JSON.stringify({ file, ok: false, message: e.message, issues }))
      else err(values.verbose === true ? (e.stack ?? e.message) : e.message)
      failed++
    }
  }
  return failed > 0 ? 1 : 0
}

export const configCommand: Command = {
  name: 'config',
  usage:
    'ttt-video config show [FILE | --preset NAME] [--set SECTION.FIELD=VALUE]... [--world-size N] [--json]\n' +
    'ttt-video config validate FILE... [--set SECTION.FIELD=VALUE]... [--world-size N] [--check-paths] [--json]\n' +
    'ttt-video config schema',
  flags: CONFIG_FLAGS,
  async run([sub, ...files], values) {
    switch (sub) {
      case 'show': {
        if (files.length > 1) throw new UsageError('config show takes at most one FILE')
        const config = configFromFlags(files[0], values)
        out(values.json ? JSON.stringify(config, null, 2) : configToToml(config))
        return 0
      }
      case 'validate':
        if (files.length === 0) throw new UsageError('config validate needs at least one FILE')
        return validate(files, values)
      case 'schema':
        out(JSON.stringify(jobConfigJsonSchema(), null, 2))
        return 0
      default:
        throw new UsageError(`unknown config command "${sub ?? ''}"; use show, validate or schema`)
    }
  },
}
