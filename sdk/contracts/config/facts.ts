// Model facts (reference-spec 1.3): the one copy. The codegen writes them into
// python/ttt_video/contracts/generated.py, where the DiT presets and the config rules read them.

/** Architecture of each `model.size` preset. */
export const MODEL_PRESETS = {
  // CogVideoX-5B + TTT (spec 4.1).
  '5B': { model_dim: 3072, num_heads: 48, num_layers: 42, text_dim: 4096, time_embed_dim: 512 },
  // The reference's "debug" preset.
  debug: { model_dim: 512, num_heads: 8, num_layers: 6, text_dim: 512, time_embed_dim: 512 },
  // CPU tests: head_dim 32 (RoPE split 8/12/12); TTT mini-batch 16 so that text length 8 fits 3 s and 9 s
  // on the tiny 8x12 latent grid (8 + 13*24 = 320, 3*8 + 37*24 = 912).
  tiny: { model_dim: 64, num_heads: 2, num_layers: 2, text_dim: 32, time_embed_dim: 32, mini_batch_size: 16 },
  // The trained demo model (models/demo, docs/demo-world.md): trained on a CPU within an hour. Twice the tiny
  // one's width and layers: at 64 x 2 it did not learn to draw the objects. Its bundle fixes its TTT
  // mini-batch (48, text length 24: 7 mini-batches per 3 s). Sin-cos position embeddings (a project switch,
  // models/sincos.py): a small model trained briefly cannot find places by RoPE alone.
  demo: {
    model_dim: 128,
    num_heads: 4,
    num_layers: 4,
    text_dim: 32,
    time_embed_dim: 32,
    mini_batch_size: 48,
    sincos_pos_embedding: true,
  },
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

/** The tables the config rules may look up (contracts/config/rules.ts). */
export const RULE_TABLES = {
  video_length_frames: VIDEO_LENGTH_FRAMES,
  model_presets: MODEL_PRESETS,
} as const

/** Pixel frames of a video with T latent frames: F = 4(T - 1) + 1. */
export function pixelFrames(latentFrames: number): number {
  return 4 * (latentFrames - 1) + 1
}
