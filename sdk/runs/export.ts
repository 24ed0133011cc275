import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { execa } from 'execa'
import { CancelledError, RunFailedError, WeightsError, WeightsNotFoundError } from '../errors.js'
import { venvPythonFor } from '../python/paths.js'

export interface ExportOptions {
  /** The bundle whose vae/, text_encoder/ and tokenizer/ the new one links (default: the run's model). */
  fromBundle?: string
  /** Weights dtype of transformer/ (default: the run's compute dtype). */
  dtype?: 'float32' | 'bfloat16' | 'float16'
  /** Copy the companion folders instead of linking them. */
  copy?: boolean
  venvDir?: string
  signal?: AbortSignal
}

export interface ExportResult {
  bundle: string
  seconds: number
}

/** The JSON line `python -m ttt_video export --json` ends with. */
type ExportLine = { type: 'result'; bundle: string } | { type: 'error'; code: string; message: string }

function exportError(line: ExportLine | undefined, stderr: string): Error {
  const logTail = stderr.trim().split('\n').slice(-20)
  if (line?.type !== 'error') return new RunFailedError(`export failed:\n${stderr.trim()}`, { logTail })
  if (line.code === 'WEIGHTS_MISSING') return new WeightsNotFoundError(line.message, { logTail })
  if (line.code === 'WEIGHTS' || line.code === 'CONFIG') return new WeightsError(line.message, { logTail })
  return new RunFailedError(line.message, { logTail, pythonCode: line.code })
}

/**
 * Writes a model bundle from a training checkpoint (`<run>/checkpoints/step-<N>`, e.g. a stage's
 * `checkpoint` in `train()`'s result): the DiT's master weights as safetensors next to the VAE and T5 of
 * the run's bundle. The bundle runs with `generate({ model })`.
 */
export async function exportBundle(
  checkpoint: string,
  bundle: string,
  options: ExportOptions = {},
): Promise<ExportResult> {
  if (!existsSync(join(checkpoint, 'COMPLETE')))
    throw new WeightsNotFoundError(
      `${checkpoint} is not a complete training checkpoint (no COMPLETE marker); give a <run>/checkpoints/step-<N> folder that a run finished writing`,
    )
  const args = ['-m', 'ttt_video', 'export', resolve(checkpoint), resolve(bundle), '--json']
  if (options.fromBundle) args.push('--from-bundle', resolve(options.fromBundle))
  if (options.dtype) args.push('--dtype', options.dtype)
  if (options.copy) args.push('--copy')
  const started = performance.now()
  const r = await execa(venvPythonFor(options.venvDir), args, {
    reject: false,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
  })
  if (r.isCanceled) throw new CancelledError('export was cancelled')
  const last = r.stdout.trim().split('\n').at(-1)
  const line = last?.startsWith('{') ? (JSON.parse(last) as ExportLine) : undefined
  if (r.exitCode !== 0 || line?.type !== 'result') throw exportError(line, r.stderr)
  return { bundle: line.bundle, seconds: Math.round(performance.now() - started) / 1000 }
}
