import type { JobConfig } from './schema.js'

/** Architecture facts of the model presets that the cross-field rules need (reference-spec 1.3). */
export const MODEL_PRESETS = {
  '5B': { modelDim: 3072, numHeads: 48, numLayers: 42, textDim: 4096 },
  debug: { modelDim: 512, numHeads: 8, numLayers: 6, textDim: 512 },
  tiny: { modelDim: 64, numHeads: 2, numLayers: 2, textDim: 32 },
} as const

/** Latent frames each `model.video_length` preset covers (reference-spec 1.2). */
export const VIDEO_LENGTH_FRAMES = {
  '3sec': 13,
  '9sec': 37,
  '18sec': 73,
  '30sec': 121,
  '63sec': 253,
} as const

/** Latent frames per 3-second segment; the first segment has one more (reference-spec 2.2). */
export const FRAMES_PER_SEGMENT = 12
/** Pixels per DiT token side: 8x VAE compression times the 2x2 patch. */
export const PIXELS_PER_TOKEN = 16

/** Number of 3-second segments n of a config, or undefined when T is not 12n + 1. */
export function segmentCount(config: JobConfig): number | undefined {
  const t = config.eval.sampling_num_frames
  const n = (t - 1) / FRAMES_PER_SEGMENT
  return Number.isInteger(n) && n >= 1 ? n : undefined
}

/** Video tokens per latent frame: (height / 16) * (width / 16). */
export function tokensPerFrame(config: JobConfig): number {
  return (
    Math.floor(config.eval.image_height / PIXELS_PER_TOKEN) *
    Math.floor(config.eval.image_width / PIXELS_PER_TOKEN)
  )
}

/** Processes the parallel layout needs: dp_replicate x dp_sharding x tp_sharding x cfg_parallel. */
export function meshSize(config: JobConfig): number {
  const p = config.parallelism
  return p.dp_replicate * p.dp_sharding * p.tp_sharding * p.cfg_parallel
}

/** Pixel frames of a video with T latent frames: F = 4(T - 1) + 1. */
export function pixelFrames(latentFrames: number): number {
  return 4 * (latentFrames - 1) + 1
}
