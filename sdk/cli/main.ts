#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { configToToml, jobConfigJsonSchema, resolveConfig, segmentCount } from '../config/index.js'
import { TttVideoError } from '../errors.js'
import { doctor, formatDoctorReport, packageRoot, setupRuntime } from '../runtime/index.js'
import { checkSegmentCounts, readStoryboardFile, segmentPrompts } from '../storyboard/index.js'
import {
  cmdConvert,
  cmdGenerate,
  cmdPreview,
  cmdProbe,
  cmdSubtitles,
  type Flags,
  UsageError,
} from './commands.js'
import { cmdServe, SERVE_FLAGS, SERVE_USAGE } from './serve.js'

// The `ttt-video` command: parses flags and calls the SDK, nothing more.

const HELP = `ttt-video: multi-scene videos with TTT-Video (CogVideoX-5B + Test-Time-Training layers)

Usage:
  ttt-video setup [--venv DIR] [--python BIN] [--cuda] [--torch-version V] [--force] [--quiet]
  ttt-video doctor [--venv DIR] [--json]
  ttt-video config show [FILE] [--set SECTION.FIELD=VALUE]... [--world-size N] [--json]
  ttt-video config validate FILE... [--set SECTION.FIELD=VALUE]... [--world-size N] [--check-paths]
  ttt-video config schema
  ttt-video storyboard check FILE --config FILE [--set SECTION.FIELD=VALUE]... [--json]
  ttt-video generate STORYBOARD [--config FILE | --preset NAME] [--model BUNDLE] [--set SECTION.FIELD=VALUE]...
                     [--gpus N] [--nnodes N --node-rank K --rdzv-endpoint HOST:PORT [--rdzv-id ID]]
                     [--out DIR] [--run-dir DIR] [--seed N] [--dry-run] [--json]
  ttt-video convert FROM TO [--ssm-layer ttt_mlp|ttt_linear|none] [--seed N] [--copy]
  ttt-video probe FILE [--json]
  ttt-video preview FILE [--format gif|webm] [--width W] [--out FILE]
  ttt-video subtitles RUN/prompt-K [--format vtt|srt] [--mux]
  ${SERVE_USAGE}

generate without --model runs the tiny demo model (random weights) on the CPU; presets: ttt-mlp/9s, ttt-linear/3s,
cogvideox/3s, tiny/9s, ... (configs/eval/). Ctrl-C cancels a run and keeps finished videos.

Options common to all commands: --verbose (stack traces on errors), --help, --version.
`

function parse(
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>,
): { values: Flags; positionals: string[] } {
  try {
    return parseArgs({
      args,
      options: { ...options, verbose: { type: 'boolean' }, help: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}

function intFlag(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`--${name} must be a positive integer, got "${value}"`)
  return n
}

const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
const err = (text: string) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`)

async function cmdSetup(args: string[]): Promise<number> {
  const { values } = parse(args, {
    venv: { type: 'string' },
    python: { type: 'string' },
    cuda: { type: 'boolean' },
    'torch-version': { type: 'string' },
    force: { type: 'boolean' },
    quiet: { type: 'boolean' },
  })
  const quiet = values.quiet === true
  const result = await setupRuntime({
    ...(values.venv ? { venvDir: values.venv as string } : {}),
    ...(values.python ? { python: values.python as string } : {}),
    ...(values['torch-version'] ? { torchVersion: values['torch-version'] as string } : {}),
    cuda: values.cuda === true,
    force: values.force === true,
    onLog: (line) => {
      if (!quiet) err(line)
    },
  })
  if (!quiet)
    out(
      `${result.venvDir} ready (torch ${result.torch}, ${result.changed ? 'installed' : 'unchanged'}, ${result.seconds} s)`,
    )
  return 0
}

async function cmdDoctor(args: string[]): Promise<number> {
  const { values } = parse(args, { venv: { type: 'string' }, json: { type: 'boolean' } })
  const report = await doctor(values.venv ? { venvDir: values.venv as string } : {})
  out(values.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report))
  return report.findings.some((f) => f.level === 'problem') ? 1 : 0
}

const CONFIG_FLAGS = {
  set: { type: 'string', multiple: true },
  'world-size': { type: 'string' },
  'check-paths': { type: 'boolean' },
  json: { type: 'boolean' },
} as const

function resolveFromFlags(file: string | undefined, values: Flags) {
  const worldSize = intFlag(values['world-size'], 'world-size')
  return resolveConfig({
    ...(file ? { file } : {}),
    set: (values.set as string[] | undefined) ?? [],
    ...(worldSize !== undefined ? { worldSize } : {}),
    checkPaths: values['check-paths'] === true,
  })
}

async function cmdConfig(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  const { values, positionals } = parse(rest, CONFIG_FLAGS)
  switch (sub) {
    case 'show': {
      if (positionals.length > 1) throw new UsageError('config show takes at most one FILE')
      const config = resolveFromFlags(positionals[0], values)
      out(values.json ? JSON.stringify(config, null, 2) : configToToml(config))
      return 0
    }
    case 'validate': {
      if (positionals.length === 0) throw new UsageError('config validate needs at least one FILE')
      let failed = 0
      for (const file of positionals) {
        try {
          resolveFromFlags(file, values)
          out(`${file}: ok`)
        } catch (e) {
          if (!(e instanceof TttVideoError)) throw e
          err(values.verbose ? (e.stack ?? e.message) : e.message)
          failed++
        }
      }
      return failed > 0 ? 1 : 0
    }
    case 'schema':
      out(JSON.stringify(jobConfigJsonSchema(), null, 2))
      return 0
    default:
      throw new UsageError(`unknown config command "${sub ?? ''}"; use show, validate or schema`)
  }
}

async function cmdStoryboard(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (sub !== 'check') throw new UsageError(`unknown storyboard command "${sub ?? ''}"; use check`)
  const { values, positionals } = parse(rest, { ...CONFIG_FLAGS, config: { type: 'string' } })
  if (positionals.length !== 1) throw new UsageError('storyboard check needs exactly one FILE')
  if (!values.config)
    throw new UsageError('storyboard check needs --config FILE (the number of segments comes from it)')
  const file = positionals[0]!
  const config = resolveFromFlags(values.config as string, values)
  const n = segmentCount(config)!
  const videos = readStoryboardFile(file)
  checkSegmentCounts(videos, n, file)
  const prompts = videos.map(segmentPrompts)
  if (values.json) {
    out(JSON.stringify({ ok: true, videos: prompts }, null, 2))
  } else {
    out(
      `${file}: ${videos.length} video${videos.length === 1 ? '' : 's'} of ${n} segment${n === 1 ? '' : 's'} (ok)`,
    )
    prompts.forEach((p, i) => {
      out(`video ${i}:`)
      p.prompts.forEach((text, j) => {
        out(`  [${j}] ${text}${p.negativePrompts[j] ? `\n      negative: ${p.negativePrompts[j]}` : ''}`)
      })
    })
  }
  return 0
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  const verbose = argv.includes('--verbose')
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      out(HELP)
      return 0
    }
    if (command === '--version' || command === '-v') {
      out(
        (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string })
          .version,
      )
      return 0
    }
    if (rest.includes('--help')) {
      out(HELP)
      return 0
    }
    switch (command) {
      case 'setup':
        return await cmdSetup(rest)
      case 'doctor':
        return await cmdDoctor(rest)
      case 'config':
        return await cmdConfig(rest)
      case 'storyboard':
        return await cmdStoryboard(rest)
      case 'generate': {
        const { values, positionals } = parse(rest, {
          config: { type: 'string' },
          preset: { type: 'string' },
          model: { type: 'string' },
          set: { type: 'string', multiple: true },
          gpus: { type: 'string' },
          nnodes: { type: 'string' },
          'node-rank': { type: 'string' },
          'rdzv-endpoint': { type: 'string' },
          'rdzv-id': { type: 'string' },
          out: { type: 'string' },
          'run-dir': { type: 'string' },
          seed: { type: 'string' },
          'dry-run': { type: 'boolean' },
          json: { type: 'boolean' },
        })
        return await cmdGenerate(positionals, values)
      }
      case 'convert': {
        const { values, positionals } = parse(rest, {
          'ssm-layer': { type: 'string' },
          seed: { type: 'string' },
          copy: { type: 'boolean' },
        })
        return await cmdConvert(positionals, values)
      }
      case 'probe': {
        const { values, positionals } = parse(rest, { json: { type: 'boolean' } })
        return await cmdProbe(positionals, values)
      }
      case 'preview': {
        const { values, positionals } = parse(rest, {
          format: { type: 'string' },
          width: { type: 'string' },
          out: { type: 'string' },
        })
        return await cmdPreview(positionals, values)
      }
      case 'serve': {
        const { values, positionals } = parse(rest, SERVE_FLAGS)
        return await cmdServe(positionals, values)
      }
      case 'subtitles': {
        const { values, positionals } = parse(rest, { format: { type: 'string' }, mux: { type: 'boolean' } })
        return await cmdSubtitles(positionals, values)
      }
      default:
        throw new UsageError(`unknown command "${command}"; run ttt-video --help`)
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`ttt-video: ${e.message}`)
      return 2
    }
    if (e instanceof TttVideoError) {
      err(verbose ? (e.stack ?? e.message) : e.message)
      return 1
    }
    err(
      verbose
        ? String((e as Error).stack ?? e)
        : `ttt-video: ${(e as Error).message ?? e} (run with --verbose for details)`,
    )
    return 1
  }
}

process.exitCode = await main(process.argv.slice(2))
