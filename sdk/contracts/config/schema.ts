import * as z from 'zod'

// The one schema of the job configuration (contract 1). Every section and field of the reference's
// JobConfig (reference-spec 1.2) plus the project's own; the defaults live here and nowhere else.
// `npm run codegen` writes configs/schema/job.schema.json and the Python dataclasses from it.

const int = () => z.int()
const positiveInt = () => z.int().min(1)
const nonNegativeInt = () => z.int().min(0)
const optionalPath = () =>
  z.string().min(1, { error: 'must not be empty (leave the field out instead)' }).nullable().default(null)

export const SSM_LAYERS = ['ttt_mlp', 'ttt_linear', 'none'] as const
export const MODEL_SIZES = ['5B', 'debug', 'tiny', 'demo'] as const
export const VIDEO_LENGTHS = ['3sec', '9sec', '18sec', '30sec', '63sec'] as const
export const DTYPES = ['bfloat16', 'float16', 'float32'] as const
export const SAMPLERS = ['dpmpp_2m_sde', 'ddim'] as const
export const GUIDANCE_SCHEDULES = ['reference', 'cosine', 'constant'] as const
export const DEVICES = ['auto', 'cpu', 'cuda'] as const
export const TTT_KERNELS = ['auto', 'triton', 'eager'] as const
export const ADAPTERS = ['sft', 'qkvo', 'ttt'] as const
/** Largest image side accepted (pixels); the 5B model was trained at 720x480. */
export const MAX_IMAGE_SIDE = 4096

/** true, false, or "auto" (decided by the run: the compute dtype, the device). */
const autoSwitch = () => z.union([z.literal('auto'), z.boolean()]).default('auto')
export const JobSection = z
  .strictObject({
    config_file: optionalPath().describe('The TOML file this config was read from (informational)'),
    exp_name: z.string().min(1).default('default job').describe('Experiment name; the output subfolder'),
    // The reference evaluates `$CWD/exp` at import time and requires an absolute path; we resolve a
    // relative path against the working directory when a run starts.
    dump_folder: z.string().min(1).default('exp').describe('Training log and checkpoint root'),
    seed: int().default(42).describe('Base seed; each video draws its noise from (seed, video index)'),
    device: z.enum(DEVICES).default('auto').describe('auto = CUDA when available, else CPU (project field)'),
  })
  .describe('[job]')

export const ModelSection = z
  .strictObject({
    name: z.literal('cogvideo').default('cogvideo'),
    size: z.enum(MODEL_SIZES).default('5B').describe('Architecture preset when no model bundle is given'),
    video_length: z
      .enum(VIDEO_LENGTHS)
      .default('3sec')
      .describe('Length preset; must cover eval.sampling_num_frames'),
    norm_eps: z
      .number()
      .positive()
      .default(1e-6)
      .describe('Unused by the reference (LN eps is fixed at 1e-6)'),
    scale_factor: z.number().positive().default(1.0).describe('Latent scale of the training data'),
    ssm_layer: z.enum(SSM_LAYERS).default('ttt_mlp').describe('none = CogVideoX with local attention only'),
    ttt_base_lr: z.number().positive().default(0.1),
    mini_batch_size: positiveInt().default(64).describe('TTT mini-batch size in tokens'),
    ttt_kernel: z
      .enum(TTT_KERNELS)
      .default('auto')
      .describe('TTT scan: auto = Triton on CUDA, eager elsewhere (project field)'),
  })
  .describe('[model]')

export const TrainingSection = z.strictObject({
  adapter_method: z
    .enum(ADAPTERS)
    .nullable()
    .default(null)
    .describe(
      'Trainable parameters: sft = all, qkvo = attention + TTT, ttt = TTT layers and gates; null = sft',
    ),
  dataset_path: optionalPath().describe(
    'The dataset folder of `ttt-video prepare` (or the root of the JSONL paths)',
  ),
  jsonl_paths: optionalPath().describe('The manifest (default: <dataset_path>/manifest.jsonl)'),
  global_batch_size: positiveInt().default(8),
  grad_accum_steps: positiveInt().default(1),
  warmup_steps: nonNegativeInt().default(50),
  steps: positiveInt().default(5000),
  gc_freq: positiveInt().default(50),
  text_dropout: z
    .number()
    .min(0)
    .max(1)
    .default(0.1)
    .describe(
      "Probability that a sample's text is replaced by the null text (0 = the reference, whose dropout never fires)",
    ),
  null_text: z
    .enum(['empty_prompt', 'zeros'])
    .default('empty_prompt')
    .describe(
      "What a dropped text becomes: T5 of the empty prompt, as sampling's unconditional branch encodes it (from the dataset's null_text.safetensors), or zeros (what SAT trained on)",
    ),
})

export const OptimizerSection = z.strictObject({
  name: z.literal('AdamW').default('AdamW'),
  lr: z.number().nonnegative().default(1e-4),
  lr_end: z.number().nonnegative().default(0.0),
  lr_ssm: z.number().nonnegative().default(1e-4),
  lr_schedule: z.enum(['linear', 'cosine']).default('linear'),
  lr_ssm_schedule: z.enum(['linear', 'cosine']).default('linear'),
  gradient_clipping_norm: z.number().positive().default(0.1),
})

export const CheckpointSection = z.strictObject({
  init_state_dir: optionalPath().describe('torch.distributed.checkpoint folder with model weights'),
  model_dir: optionalPath().describe(
    'Model bundle folder (transformer/, vae/, text_encoder/, tokenizer/) (project field)',
  ),
  interval: nonNegativeInt().default(0).describe('Save every N optimiser steps (0: only at the end)'),
  keep: nonNegativeInt()
    .default(0)
    .describe('Complete checkpoints kept, newest first (0: all) (project field)'),
  resume: z.boolean().default(false),
  resume_step: int().min(-1).default(-1),
  timeout_minutes: nonNegativeInt().default(0),
})

export const ParallelismSection = z.strictObject({
  fsdp_unsharded_dtype: z.enum(DTYPES).default('bfloat16').describe('DiT compute dtype'),
  tp_sharding: positiveInt().default(1),
  // Reference default (a training layout for 8-GPU nodes); every shipped eval preset sets 1.
  dp_sharding: positiveInt().default(8),
  dp_replicate: positiveInt().default(1),
  cfg_parallel: z
    .int()
    .min(1)
    .max(2)
    .default(1)
    .describe('2 = conditional and unconditional branches on two ranks (project field)'),
})

export const RematSection = z.strictObject({
  transformer_checkpoint_layer_group_size: nonNegativeInt()
    .default(1)
    .describe(
      'Layers per checkpointed group; 0 = no layer checkpointing (project setting, for small models)',
    ),
  scan_checkpoint_group_size: nonNegativeInt()
    .default(16)
    .describe('TTT mini-batches per checkpointed scan group; 0 = off (project setting, for small models)'),
  forward_ssm: z.boolean().default(false),
  reverse_ssm: z.boolean().default(false),
  attention: z.boolean().default(false),
  mlp: z.boolean().default(false),
  seq_modeling_block: z.boolean().default(false),
  shard_transformer_inputs: z.boolean().default(false),
})

export const CommSection = z.strictObject({
  init_timeout_seconds: positiveInt().default(1200),
})

export const WandbSection = z.strictObject({
  disable: z.boolean().default(false),
  project: z.string().default('ttt-video'),
  entity: z.string().default('default'),
  log_interval: positiveInt().default(50),
  alert: z.boolean().default(false),
})

export const EvalSection = z.strictObject({
  input_file: optionalPath().describe('Storyboard file (.json or .jsonl)'),
  output_dir: z.string().min(1).default('./output'),
  image_width: positiveInt().max(MAX_IMAGE_SIDE).default(720),
  image_height: positiveInt().max(MAX_IMAGE_SIDE).default(480),
  sampling_fps: positiveInt().max(240).default(16),
  sampling_num_frames: positiveInt().default(13).describe('Latent frames T = 12n + 1'),
  latent_channels: positiveInt().max(256).default(16),
  num_denoising_steps: positiveInt().max(1000).default(50).describe('Sampler steps, 1 to 1000'),
  scale_factor: z.number().positive().default(0.7).describe('Unused by the reference'),
  dtype: z.enum(DTYPES).default('bfloat16').describe('dtype of T5, the VAE and the text embeddings'),
  vae_checkpoint_path: optionalPath().describe(
    'SAT-format 3d-vae.pt (optional; the bundle vae/ is used otherwise)',
  ),
  vae_scale_factor: z
    .number()
    .positive()
    .default(1.0)
    .describe('Latents are divided by this before decoding'),
  txt_maxlen: positiveInt().max(8192).default(498).describe('T5 tokens per segment prompt (L)'),
  t5_model_dir: optionalPath(),
  sampler: z.enum(SAMPLERS).default('dpmpp_2m_sde').describe('(project field)'),
  cfg_batch: z
    .boolean()
    .default(true)
    .describe('Run both guidance branches as one batch of 2 (project field)'),
  cuda_graphs: autoSwitch().describe(
    'Capture the DiT forward of a denoising step once and replay it; auto = on for CUDA (project field)',
  ),
})

export const GuiderSection = z.strictObject({
  scale: z.number().nonnegative().default(6),
  exp: z.number().nonnegative().default(5),
  num_steps: positiveInt().default(50).describe('Unused by the reference (eval.num_denoising_steps is used)'),
  schedule: z
    .enum(GUIDANCE_SCHEDULES)
    .default('reference')
    .describe(
      "reference = the reference's erratic sequence; cosine = the intended rise; constant (project field)",
    ),
})

export const DenoiserSection = z.strictObject({
  num_idx: positiveInt().default(1000),
  quantize_c_noise: z.boolean().default(false),
})

export const DiscretizationSection = z.strictObject({
  shift_scale: z.number().positive().default(1.0),
})

// Switches between the reference's numerics ("reference") and the intended behaviour (reference-spec 14.2).
export const FaithfulnessSection = z
  .strictObject({
    ttt_lr_alignment: z.enum(['reference', 'aligned']).default('reference').describe('spec 5.2'),
    reverse_pairing: z.enum(['reference', 'aligned']).default('reference').describe('spec 5.7'),
    timestep_bf16: autoSwitch().describe(
      'Round the timestep to bf16 before embedding (spec 4.2); auto = when the DiT computes in bf16',
    ),
    rope_bf16: autoSwitch().describe(
      'Attention rotary tables and rotation in bf16 (spec 4.4); auto = when the DiT computes in bf16',
    ),
    sigma_quantization: z
      .boolean()
      .default(true)
      .describe('c_skip/c_out from the nearest 1000-grid value (spec 6.3)'),
  })
  .describe('[faithfulness] (project section)')

const sectionShapes = {
  job: JobSection,
  model: ModelSection,
  training: TrainingSection,
  optimizer: OptimizerSection,
  checkpoint: CheckpointSection,
  parallelism: ParallelismSection,
  remat: RematSection,
  comm: CommSection,
  wandb: WandbSection,
  eval: EvalSection,
  guider: GuiderSection,
  denoiser: DenoiserSection,
  discretization: DiscretizationSection,
  faithfulness: FaithfulnessSection,
}

// `.prefault({})` parses an absent section as an empty table, so its fields take their defaults.
export const JobConfigSchema = z
  .strictObject({
    job: JobSection.prefault({}),
    model: ModelSection.prefault({}),
    training: TrainingSection.prefault({}),
    optimizer: OptimizerSection.prefault({}),
    checkpoint: CheckpointSection.prefault({}),
    parallelism: ParallelismSection.prefault({}),
    remat: RematSection.prefault({}),
    comm: CommSection.prefault({}),
    wandb: WandbSection.prefault({}),
    eval: EvalSection.prefault({}),
    guider: GuiderSection.prefault({}),
    denoiser: DenoiserSection.prefault({}),
    discretization: DiscretizationSection.prefault({}),
    faithfulness: FaithfulnessSection.prefault({}),
  })
  .meta({ id: 'JobConfig', title: 'ttt-video job configuration' })

export type JobConfig = z.output<typeof JobConfigSchema>
export type JobConfigInput = z.input<typeof JobConfigSchema>
export type SectionName = keyof typeof sectionShapes
export const SECTION_NAMES = Object.keys(sectionShapes) as SectionName[]

/** The fields of a section, in schema order. */
export function fieldNames(section: SectionName): string[] {
  return Object.keys(sectionShapes[section].shape)
}

/** The zod schema of one field. */
export function fieldSchema(section: SectionName, field: string): z.ZodType {
  return sectionShapes[section].shape[field as never] as z.ZodType
}

/** The JSON Schema of a config file as users write it (defaulted fields are optional). */
export function jobConfigJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(JobConfigSchema, { target: 'draft-2020-12', io: 'input' }) as Record<string, unknown>
}
