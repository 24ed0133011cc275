/** `inspectBundle`: what `ttt_video.contracts.bundle.inspect_bundle` reports about a model bundle folder. */
import { callPython } from './shared.js'
import type { BridgeOptions, CallOptions } from './types.js'

/** One `*.safetensors` file, from its header. `error` is set (and the rest absent) when it is unreadable. */
export interface SafetensorsFileInfo {
  file: string
  bytes: number
  tensors?: number
  parameters?: number
  tensor_bytes?: number
  dtypes?: Record<string, number>
  metadata?: Record<string, string>
  error?: string
}

export interface BundleComponentInfo {
  present: boolean
  path: string
  files?: string[]
  config?: Record<string, unknown> | null
  safetensors?: {
    files: SafetensorsFileInfo[]
    tensors: number
    parameters: number
    /** Tensor data bytes (headers excluded). */
    bytes: number
    dtypes: Record<string, number>
    index?: { file: string; shards: string[]; missing: string[] }
  }
  /** Pickled checkpoints found (listed, never opened). */
  pickle_files?: string[]
  errors?: string[]
}

/** What `ttt_video.contracts.bundle.inspect_bundle` reports about a model bundle folder (contract 4). */
export interface BundleReport {
  path: string
  exists: boolean
  components: Record<'transformer' | 'vae' | 'text_encoder' | 'tokenizer', BundleComponentInfo>
  missing: string[]
  /** What stops the bundle from loading, one line each; empty when `complete`. */
  problems: string[]
  complete: boolean
}

/** Describes a model bundle folder (configs, safetensors headers) without loading weights. */
export function inspectBundle(
  path: string,
  options: CallOptions & BridgeOptions = {},
): Promise<BundleReport> {
  return callPython('ttt_video.contracts.bundle.inspect_bundle', { path }, options)
}
