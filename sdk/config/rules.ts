import { existsSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import type { InputIssue } from '../errors.js'
import {
  FRAMES_PER_SEGMENT,
  MODEL_PRESETS,
  meshSize,
  segmentCount,
  tokensPerFrame,
  VIDEO_LENGTH_FRAMES,
} from './presets.js'
import type { JobConfig } from './schema.js'

export interface RuleOptions {
  /** Processes of the run; the mesh rule is checked only when it is known. */
  worldSize?: number
  /** Check that every path the config names exists (relative paths against `baseDir`). */
  checkPaths?: boolean
  baseDir?: string
}

const PATH_FIELDS = [
  ['checkpoint', 'model_dir'],
  ['checkpoint', 'init_state_dir'],
  ['eval', 'vae_checkpoint_path'],
  ['eval', 't5_model_dir'],
  ['eval', 'input_file'],
  ['training', 'dataset_path'],
  ['training', 'jsonl_paths'],
] as const

/** Cross-field rules of a schema-valid config (the same rules as python/ttt_video/config.py). */
export function checkRules(config: JobConfig, options: RuleOptions = {}): InputIssue[] {
  const issues: InputIssue[] = []
  const { eval: ev, model, parallelism: par } = config
  const t = ev.sampling_num_frames
  const n = segmentCount(config)

  if (n === undefined) {
    const lower = Math.max(1, Math.floor((t - 1) / FRAMES_PER_SEGMENT))
    issues.push({
      path: 'eval.sampling_num_frames',
      message: `must be 12n + 1 latent frames for n >= 1 segments (13, 25, 37, ...), got ${t}; use ${lower * 12 + 1} or ${(lower + 1) * 12 + 1}`,
    })
  }
  for (const [field, value] of [
    ['image_width', ev.image_width],
    ['image_height', ev.image_height],
  ] as const) {
    if (value % 16 !== 0) {
      issues.push({
        path: `eval.${field}`,
        message: `must be a multiple of 16 (8x VAE compression times the 2x2 patch), got ${value}; use ${Math.max(16, Math.round(value / 16) * 16)}`,
      })
    }
  }
  const covered = VIDEO_LENGTH_FRAMES[model.video_length]
  if (t > covered) {
    const fits = Object.entries(VIDEO_LENGTH_FRAMES).find(([, frames]) => frames >= t)
    issues.push({
      path: 'model.video_length',
      message: `"${model.video_length}" covers ${covered} latent frames but eval.sampling_num_frames is ${t}; ${fits ? `use "${fits[0]}"` : 'no preset covers that many frames'}`,
    })
  }
  if (
    n !== undefined &&
    model.ssm_layer !== 'none' &&
    ev.image_width % 16 === 0 &&
    ev.image_height % 16 === 0
  ) {
    const tpf = tokensPerFrame(config)
    const total = n * ev.txt_maxlen + t * tpf
    if (total % model.mini_batch_size !== 0) {
      issues.push({
        path: 'eval.txt_maxlen',
        message: `the TTT sequence n*txt_maxlen + T*tokens_per_frame = ${n}*${ev.txt_maxlen} + ${t}*${tpf} = ${total} is not a multiple of model.mini_batch_size (${model.mini_batch_size}); ${suggestTextLength(n, t * tpf, ev.txt_maxlen, model.mini_batch_size)}`,
      })
    }
  }
  const heads = MODEL_PRESETS[model.size].numHeads
  if (heads % par.tp_sharding !== 0) {
    issues.push({
      path: 'parallelism.tp_sharding',
      message: `the ${model.size} model has ${heads} attention heads, which ${par.tp_sharding} does not divide; use one of ${divisors(heads).join(', ')}`,
    })
  }
  if (config.remat.shard_transformer_inputs && par.tp_sharding <= 1) {
    issues.push({
      path: 'remat.shard_transformer_inputs',
      message:
        'needs parallelism.tp_sharding > 1 (it shards saved layer inputs over the tensor-parallel group)',
    })
  }
  if (options.worldSize !== undefined && meshSize(config) !== options.worldSize) {
    issues.push({
      path: 'parallelism',
      message: `dp_replicate x dp_sharding x tp_sharding x cfg_parallel = ${par.dp_replicate} x ${par.dp_sharding} x ${par.tp_sharding} x ${par.cfg_parallel} = ${meshSize(config)}, but the run has ${options.worldSize} processes; change the mesh (e.g. parallelism.dp_sharding = ${Math.max(1, options.worldSize / (par.dp_replicate * par.tp_sharding * par.cfg_parallel))}) or the number of processes so they agree`,
    })
  }
  if (options.checkPaths) {
    for (const [section, field] of PATH_FIELDS) {
      const value = (config[section] as Record<string, unknown>)[field]
      if (typeof value !== 'string') continue
      const full = isAbsolute(value) ? value : resolve(options.baseDir ?? process.cwd(), value)
      if (!existsSync(full)) {
        issues.push({ path: `${section}.${field}`, message: `path does not exist: ${full}` })
      }
    }
  }
  return issues
}

function divisors(k: number): number[] {
  return Array.from({ length: k }, (_, i) => i + 1).filter((d) => k % d === 0)
}

function suggestTextLength(n: number, videoTokens: number, current: number, miniBatch: number): string {
  const fits: number[] = []
  for (let delta = 0; delta <= miniBatch * 4 && fits.length < 2; delta++) {
    for (const l of new Set([current - delta, current + delta])) {
      if (l >= 1 && (n * l + videoTokens) % miniBatch === 0 && !fits.includes(l)) fits.push(l)
    }
  }
  return fits.length > 0
    ? `the nearest eval.txt_maxlen that works is ${fits.sort((a, b) => Math.abs(a - current) - Math.abs(b - current))[0]}`
    : 'change eval.txt_maxlen or model.mini_batch_size'
}
