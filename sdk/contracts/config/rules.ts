import {
  add,
  and,
  defined,
  type Expr,
  eq,
  floordiv,
  format,
  ge,
  gt,
  iff,
  le,
  mod,
  mul,
  ne,
  op,
  ref,
  sub,
} from './expr.js'

// The cross-field rules of a config (contract 1), written once, as data. Both validators evaluate this
// data: sdk/contracts/config/validate.ts and python/ttt_video/contracts/config.py (which reads it from
// the generated module). Names a rule may read: `section.field`, the derived values `@name` below, the
// run's `$world_size` and `$run_kind` (null when unknown), and its own `let` names.

export interface Rule {
  /** A short name, for tests and docs. */
  id: string
  /** The field the issue is reported on. */
  path: string
  /** The rule applies only when this holds. */
  when?: Expr
  /** Named values, evaluated in order once the rule applies. */
  let?: readonly (readonly [string, Expr])[]
  /** What must hold. */
  require: Expr
  /** Named values only the message needs (suggestions), evaluated only when the rule fails. */
  hints?: readonly (readonly [string, Expr])[]
  /** The message (a string expression) when it does not. */
  message: Expr
}

const T = ref('eval.sampling_num_frames')
const W = ref('eval.image_width')
const H = ref('eval.image_height')
const L = ref('eval.txt_maxlen')
const MB = ref('model.mini_batch_size')
const TP = ref('parallelism.tp_sharding')
const max = op('max')
const training = eq(ref('$run_kind'), 'train')
const DP = mul(ref('parallelism.dp_replicate'), ref('parallelism.dp_sharding'))
const lookup = op('lookup')

/**
 * The paths a config reads, which `checkPaths` requires to exist; a run kind that writes the path
 * instead (prepare writes training.dataset_path) is exempt.
 */
export const PATH_FIELDS: readonly { path: string; output_of?: string }[] = [
  { path: 'checkpoint.model_dir' },
  { path: 'checkpoint.init_state_dir' },
  { path: 'eval.vae_checkpoint_path' },
  { path: 'eval.t5_model_dir' },
  { path: 'eval.input_file' },
  { path: 'training.dataset_path', output_of: 'prepare' },
  { path: 'training.jsonl_paths' },
]

/** Values computed from a config; `segmentCount` and friends in validate.ts evaluate these. */
export const DERIVED: Readonly<Record<string, Expr>> = {
  // n of T = 12n + 1, or null
  segments: iff(and(eq(mod(sub(T, 1), 12), 0), ge(T, 13)), floordiv(sub(T, 1), 12), null),
  tokens_per_frame: mul(floordiv(H, 16), floordiv(W, 16)),
  mesh_size: mul(
    ref('parallelism.dp_replicate'),
    ref('parallelism.dp_sharding'),
    TP,
    ref('parallelism.cfg_parallel'),
  ),
}

const multipleOf16 = (path: string, value: Expr): Rule => ({
  id: `${path.split('.')[1]}-multiple-of-16`,
  path,
  require: eq(mod(value, 16), 0),
  hints: [['use', max(16, mul(op('divround')(value, 16), 16))]],
  message: format(
    `must be a multiple of 16 (8x VAE compression times the 2x2 patch), got {${path}}; use {use}`,
  ),
})

export const RULES: readonly Rule[] = [
  {
    id: 'frames-12n+1',
    path: 'eval.sampling_num_frames',
    require: defined(ref('@segments')),
    hints: [
      ['lower', max(1, floordiv(sub(T, 1), 12))],
      ['below', add(mul(ref('lower'), 12), 1)],
      ['above', add(mul(ref('lower'), 12), 13)],
    ],
    message: format(
      'must be 12n + 1 latent frames for n >= 1 segments (13, 25, 37, ...), got {eval.sampling_num_frames}; use {below} or {above}',
    ),
  },
  multipleOf16('eval.image_width', W),
  multipleOf16('eval.image_height', H),
  {
    id: 'video-length-covers-frames',
    path: 'model.video_length',
    let: [['covered', lookup('video_length_frames', ref('model.video_length'))]],
    require: ge(ref('covered'), T),
    hints: [['fits', op('first_key')('video_length_frames', ge(ref('$value'), T))]],
    message: iff(
      defined(ref('fits')),
      format(
        '"{model.video_length}" covers {covered} latent frames but eval.sampling_num_frames is {eval.sampling_num_frames}; use "{fits}"',
      ),
      format(
        '"{model.video_length}" covers {covered} latent frames but eval.sampling_num_frames is {eval.sampling_num_frames}; no preset covers that many frames',
      ),
    ),
  },
  tttSequenceRule(),
  {
    id: 'tp-divides-heads',
    path: 'parallelism.tp_sharding',
    let: [['heads', lookup('model_presets', ref('model.size'), 'num_heads')]],
    require: eq(mod(ref('heads'), TP), 0),
    hints: [['divisors', op('divisors')(ref('heads'))]],
    message: format(
      'the {model.size} model has {heads} attention heads, which {parallelism.tp_sharding} does not divide; use one of {divisors}',
    ),
  },
  {
    id: 'shard-inputs-needs-tp',
    path: 'remat.shard_transformer_inputs',
    when: ref('remat.shard_transformer_inputs'),
    require: gt(TP, 1),
    message:
      'needs parallelism.tp_sharding > 1 (it shards saved layer inputs over the tensor-parallel group)',
  },
  meshRule(),
  ...trainingRules(),
]

function tttSequenceRule(): Rule {
  const n = ref('@segments')
  const videoTokens = mul(T, ref('@tokens_per_frame'))
  return {
    id: 'ttt-sequence-fits-mini-batches',
    path: 'eval.txt_maxlen',
    when: and(defined(n), ne(ref('model.ssm_layer'), 'none'), eq(mod(W, 16), 0), eq(mod(H, 16), 0)),
    let: [['total', add(mul(n, L), videoTokens)]],
    require: eq(mod(ref('total'), MB), 0),
    hints: [['nearest', op('nearest')(L, mul(4, MB), eq(mod(add(mul(n, ref('$x')), videoTokens), MB), 0))]],
    message: iff(
      defined(ref('nearest')),
      format(
        'the TTT sequence n*txt_maxlen + T*tokens_per_frame = {@segments}*{eval.txt_maxlen} + {eval.sampling_num_frames}*{@tokens_per_frame} = {total} is not a multiple of model.mini_batch_size ({model.mini_batch_size}); the nearest eval.txt_maxlen that works is {nearest}',
      ),
      format(
        'the TTT sequence n*txt_maxlen + T*tokens_per_frame = {@segments}*{eval.txt_maxlen} + {eval.sampling_num_frames}*{@tokens_per_frame} = {total} is not a multiple of model.mini_batch_size ({model.mini_batch_size}); change eval.txt_maxlen or model.mini_batch_size',
      ),
    ),
  }
}

function meshRule(): Rule {
  const world = ref('$world_size')
  const others = mul(ref('parallelism.dp_replicate'), TP, ref('parallelism.cfg_parallel'))
  const head =
    'dp_replicate x dp_sharding x tp_sharding x cfg_parallel = {parallelism.dp_replicate} x {parallelism.dp_sharding} x {parallelism.tp_sharding} x {parallelism.cfg_parallel} = {@mesh_size}, but the run has {$world_size} processes; '
  return {
    id: 'mesh-matches-world-size',
    path: 'parallelism',
    // prepare ignores the mesh: each of its processes encodes its own share of the clips
    when: and(defined(world), ne(ref('$run_kind'), 'prepare')),
    let: [['others', others]],
    require: eq(ref('@mesh_size'), world),
    hints: [['dp_sharding', floordiv(world, ref('others'))]],
    message: iff(
      eq(mod(world, ref('others')), 0),
      format(
        `${head}change the mesh (e.g. parallelism.dp_sharding = {dp_sharding}) or the number of processes so they agree`,
      ),
      format(`${head}launch a multiple of {others} processes, or change the mesh so they agree`),
    ),
  }
}

/** Rules of training runs only ($run_kind = "train"). */
function trainingRules(): Rule[] {
  return [
    {
      id: 'training-needs-data',
      path: 'training.dataset_path',
      when: training,
      require: defined(ref('training.dataset_path')),
      message: 'is needed to train: the folder that `ttt-video prepare` wrote (--data DATASET)',
    },
    {
      id: 'batch-divides-over-data-parallel-ranks',
      path: 'training.global_batch_size',
      when: training,
      let: [['dp', DP]],
      require: eq(mod(ref('training.global_batch_size'), ref('dp')), 0),
      message: format(
        'is {training.global_batch_size}, which the {dp} data-parallel ranks (dp_replicate x dp_sharding) do not share evenly; use a multiple of {dp}',
      ),
    },
    {
      id: 'accumulation-divides-local-batch',
      path: 'training.grad_accum_steps',
      when: and(training, eq(mod(ref('training.global_batch_size'), DP), 0)),
      let: [['local', floordiv(ref('training.global_batch_size'), DP)]],
      require: eq(mod(ref('local'), ref('training.grad_accum_steps')), 0),
      message: format(
        'is {training.grad_accum_steps}, which does not divide the local batch of {local} samples per rank (training.global_batch_size / data-parallel ranks)',
      ),
    },
    {
      id: 'warmup-within-steps',
      path: 'training.warmup_steps',
      when: training,
      require: le(ref('training.warmup_steps'), ref('training.steps')),
      message: format('is {training.warmup_steps}, more than training.steps ({training.steps})'),
    },
    {
      id: 'no-cfg-parallel-in-training',
      path: 'parallelism.cfg_parallel',
      when: training,
      require: eq(ref('parallelism.cfg_parallel'), 1),
      message: 'must be 1 for training (CFG-parallel splits the two guidance branches of sampling)',
    },
  ]
}
