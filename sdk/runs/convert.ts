import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { ConfigError } from '../errors.js'
import { pythonCommand, resolveLayout, runEnvironment } from '../launch/command.js'
import { type LogLine, type Run, startRun } from '../launch/run.js'
import { venvPythonFor } from '../python/paths.js'

export interface ConvertOptions {
  ssmLayer?: 'ttt_mlp' | 'ttt_linear' | 'none'
  /** Seed of the new TTT parameters (default 0). */
  seed?: number
  /** Copy vae/, text_encoder/ and tokenizer/ instead of linking them. */
  copy?: boolean
  /** Largest safetensors shard in bytes (default 5 GiB). */
  shardBytes?: number
  venvDir?: string
  signal?: AbortSignal
  onLog?: (log: LogLine) => void
}

export interface ConvertResult {
  bundle: string
  seconds: number
}

/**
 * Converts a diffusers CogVideoX snapshot (or its transformer/) into a TTT-Video model bundle, as a run
 * with events (`convert.progress`, `convert.shard`). Its run directory is temporary: removed when the
 * conversion succeeds, kept (with its events and log) when it fails.
 */
export async function convert(
  from: string,
  to: string,
  options: ConvertOptions = {},
): Promise<Run<ConvertResult>> {
  if (options.seed !== undefined && (!Number.isInteger(options.seed) || options.seed < 0))
    throw new ConfigError([{ path: 'seed', message: `must be a whole number >= 0, got ${options.seed}` }])
  if (options.shardBytes !== undefined && !(options.shardBytes > 0))
    throw new ConfigError([
      { path: 'shardBytes', message: `must be a positive number, got ${options.shardBytes}` },
    ])
  const runDir = mkdtempSync(join(tmpdir(), 'ttt-video-convert-'))
  const entry = [
    'convert',
    '--from',
    resolve(from),
    '--out',
    resolve(to),
    '--run-dir',
    runDir,
    '--ssm-layer',
    options.ssmLayer ?? 'ttt_mlp',
    '--seed',
    String(options.seed ?? 0),
    ...(options.copy ? ['--copy'] : []),
    ...(options.shardBytes !== undefined ? ['--shard-bytes', String(options.shardBytes)] : []),
  ]
  return startRun({
    kind: 'convert',
    command: pythonCommand(venvPythonFor(options.venvDir), entry, resolveLayout({}, 'convert')),
    runDir,
    collect: (_progress, dir, seconds) => {
      rmSync(dir, { recursive: true, force: true })
      return { bundle: resolve(to), seconds }
    },
    env: runEnvironment(),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onLog ? { onLog: options.onLog } : {}),
  })
}
