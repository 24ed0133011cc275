import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import * as z from 'zod'
import { WeightsNotFoundError } from '../errors.js'

// Contract 4: a model bundle, in the layout of the public CogVideoX-5b snapshot (python/ttt_video/
// contracts/bundle.py reads it; the names are generated for it from here).

/** The four component folders, in the order they load. */
export const BUNDLE_COMPONENTS = ['transformer', 'vae', 'text_encoder', 'tokenizer'] as const
/** What `ttt-video convert` (and training's export) write beside the components. */
export const BUNDLE_INFO_FILE = 'bundle.json'
export const BUNDLE_FORMAT = 'ttt-video-bundle'

export const BundleInfo = z.object({
  format: z.literal(BUNDLE_FORMAT),
  version: z.literal(1),
  /** Latent scale the DiT expects (0.7 for raw CogVideoX weights, 1.0 for TTT-Video fine-tunes). */
  latent_scale: z.number().positive(),
  source: z.string(),
  ssm_layer: z.enum(['ttt_mlp', 'ttt_linear', 'none']),
  seed: z.int().nullable(),
})
export type BundleInfo = z.infer<typeof BundleInfo>

/** Throws WeightsNotFoundError naming what is missing; checks the layout only (Python checks the files). */
export function checkBundle(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new WeightsNotFoundError(
      `the model bundle ${dir} does not exist; convert the CogVideoX-5b snapshot with \`ttt-video convert\``,
    )
  const missing = BUNDLE_COMPONENTS.filter((p) => !existsSync(join(dir, p)))
  if (missing.length > 0) {
    throw new WeightsNotFoundError(
      `the model bundle ${dir} lacks ${missing.join(', ')}; a bundle holds ${BUNDLE_COMPONENTS.map((c) => `${c}/`).join(', ')} (see docs/weights.md)`,
    )
  }
}
