import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { configToToml } from '../config/index.js'
import { CancelledError } from '../errors.js'
import { generate, prepareRun } from '../generate.js'
import { convertWeights } from '../runtime/bridge.js'
import { resolveVenvDir, venvPython } from '../runtime/paths.js'
import { preview, probe, subtitles } from '../video/index.js'
import { ProgressDisplay } from './progress.js'

export type Flags = Record<string, string | boolean | string[] | undefined>
export class UsageError extends Error {}

const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
const err = (text: string) => process.stderr.write(text)

function int(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`--${name} must be a non-negative integer, got "${value}"`)
  return n
}

export async function cmdGenerate(positionals: string[], values: Flags): Promise<number> {
  if (positionals.length !== 1)
    throw new UsageError('generate needs exactly one STORYBOARD file (.json or .jsonl)')
  if (values.config && values.preset) throw new UsageError('give --config or --preset, not both')
  const json = values.json === true
  const seed = int(values.seed, 'seed')
  const options = {
    ...(values.config ? { config: values.config as string } : {}),
    ...(values.preset ? { preset: values.preset as string } : {}),
    ...(values.model ? { model: values.model as string } : {}),
    ...(values.out ? { outputDir: values.out as string } : {}),
    ...(values['run-dir'] ? { runDir: values['run-dir'] as string } : {}),
    ...(seed !== undefined ? { seed } : {}),
    set: (values.set as string[] | undefined) ?? [],
    ...layoutFlags(values),
    onNotice: (message: string) => err(`note: ${message}\n`),
  }
  const storyboard = positionals[0]!
  if (values['dry-run']) {
    const prepared = await prepareRun(storyboard, { ...options, dryRun: true })
    out(`# resolved config\n${configToToml(prepared.config)}`)
    out(`# command (run directory: ${prepared.runDir})\n${prepared.command.map(quote).join(' ')}\n`)
    const python = venvPython(resolveVenvDir())
    const tmp = mkdtempSync(join(tmpdir(), 'ttt-video-dry-run-'))
    const configFile = join(tmp, 'config.toml')
    writeFileSync(configFile, configToToml(prepared.config))
    const table = await execa(python, ['-m', 'ttt_video', 'table', '--config', configFile], { reject: false })
    rmSync(tmp, { recursive: true, force: true })
    out(`# sampler table\n${table.exitCode === 0 ? table.stdout : table.stderr}`)
    return table.exitCode === 0 ? 0 : 1
  }

  const controller = new AbortController()
  const onSigint = () => controller.abort('Ctrl-C')
  process.once('SIGINT', onSigint)
  const verbose = values.verbose === true
  const display = new ProgressDisplay(err, process.stderr.isTTY === true && !json)
  const run = await generate(storyboard, {
    ...options,
    signal: controller.signal,
    onLog: ({ line }) => {
      if (verbose) err(`  | ${line}\n`)
    },
  })
  try {
    for await (const event of run) {
      if (json) out(JSON.stringify(event))
      else display.handle(event)
    }
    const result = await run.result
    display.finish()
    if (json)
      out(JSON.stringify({ type: 'result', ...result, videos: result.videos.map(({ meta: _m, ...v }) => v) }))
    else for (const video of result.videos) out(video.path)
    return 0
  } catch (e) {
    display.finish()
    if (e instanceof CancelledError) {
      err(`${e.message}\n`)
      return 130
    }
    throw e
  } finally {
    process.removeListener('SIGINT', onSigint)
  }
}

function layoutFlags(values: Flags) {
  const gpus = int(values.gpus, 'gpus')
  const nnodes = int(values.nnodes, 'nnodes')
  const nodeRank = int(values['node-rank'], 'node-rank')
  return {
    ...(gpus !== undefined ? { gpus } : {}),
    ...(nnodes !== undefined ? { nnodes } : {}),
    ...(nodeRank !== undefined ? { nodeRank } : {}),
    ...(values['rdzv-endpoint'] ? { rdzvEndpoint: values['rdzv-endpoint'] as string } : {}),
    ...(values['rdzv-id'] ? { rdzvId: values['rdzv-id'] as string } : {}),
  }
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`
}

export async function cmdConvert(positionals: string[], values: Flags): Promise<number> {
  if (positionals.length !== 2)
    throw new UsageError(
      'convert needs FROM (a CogVideoX snapshot or its transformer/) and TO (the bundle folder)',
    )
  const seed = int(values.seed, 'seed')
  const ssmLayer = (values['ssm-layer'] as string | undefined) ?? 'ttt_mlp'
  if (!['ttt_mlp', 'ttt_linear', 'none'].includes(ssmLayer))
    throw new UsageError('--ssm-layer must be ttt_mlp, ttt_linear or none')
  const tty = process.stderr.isTTY === true
  const controller = new AbortController()
  const onSigint = () => controller.abort('Ctrl-C')
  process.once('SIGINT', onSigint)
  try {
    const path = await convertWeights(positionals[0]!, positionals[1]!, {
      ssmLayer: ssmLayer as 'ttt_mlp',
      ...(seed !== undefined ? { seed } : {}),
      copy: values.copy === true,
      signal: controller.signal,
      onProgress: (event) => {
        const e = event as { type: string; done?: number; total?: number; file?: string }
        if (e.type === 'convert.progress' && tty) err(`\r\x1b[2Kconverting ${e.done}/${e.total} tensors`)
        else if (e.type === 'convert.shard') err(`${tty ? '\r\x1b[2K' : ''}wrote ${e.file}\n`)
      },
    })
    if (tty) err('\r\x1b[2K')
    out(path)
    return 0
  } finally {
    process.removeListener('SIGINT', onSigint)
  }
}

export async function cmdProbe(positionals: string[], values: Flags): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('probe needs one FILE')
  const info = await probe(positionals[0]!)
  out(
    values.json
      ? JSON.stringify(info, null, 2)
      : `${info.file}: ${info.codec} ${info.width}x${info.height} ${info.pixelFormat}, ${info.frames} frames at ${info.fps} fps (${info.duration.toFixed(3)} s)`,
  )
  for (const warning of info.warnings) err(`warning: ${warning}\n`)
  return info.warnings.length ? 1 : 0
}

export async function cmdPreview(positionals: string[], values: Flags): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('preview needs one FILE')
  const format = (values.format as string | undefined) ?? 'gif'
  if (format !== 'gif' && format !== 'webm') throw new UsageError('--format must be gif or webm')
  const width = values.width === undefined ? undefined : Number(values.width)
  if (width !== undefined && !(Number.isInteger(width) && width >= 1))
    throw new UsageError(`--width must be a positive integer (pixels), got "${values.width}"`)
  out(
    await preview(positionals[0]!, {
      format,
      ...(width !== undefined ? { width } : {}),
      ...(values.out ? { out: values.out as string } : {}),
    }),
  )
  return 0
}

export async function cmdSubtitles(positionals: string[], values: Flags): Promise<number> {
  if (positionals.length !== 1)
    throw new UsageError('subtitles needs one video folder of a run (prompt-<k>/) or its video.mp4')
  const format = (values.format as string | undefined) ?? 'vtt'
  if (format !== 'vtt' && format !== 'srt') throw new UsageError('--format must be vtt or srt')
  const folder = positionals[0]!.endsWith('.mp4')
    ? positionals[0]!.replace(/[/\\][^/\\]+$/, '')
    : positionals[0]!
  const result = await subtitles(folder, { format, mux: values.mux === true })
  out(result.path ?? result.text)
  if (result.muxed) out(result.muxed)
  return 0
}
