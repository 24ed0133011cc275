"""Fine-tuning (spec 9). Exported here: the pure building blocks (the objective, stratified timesteps,
optimisation). The loop is built on them in submodules imported where needed (they pull in
torch.distributed.checkpoint): dataset, batches, model_setup, remat, step, grads, checkpoints,
loss_curve and loop (``Trainer``, run by ``python -m ttt_video train``). See docs/training.md.
"""

from .loss import LOGVAR_MAX, LOGVAR_MIN, diffusion_loss, sample_latents, text_dropout
from .optim import (
    ADAPTERS,
    GROUP_NAMES,
    SCHEDULES,
    WEIGHT_DECAY,
    apply_trainable_set,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    group_parameters,
    is_attention_parameter,
    is_trainable,
    is_ttt_parameter,
    lr_multiplier,
    parameter_group_name,
    skips_weight_decay,
)
from .timesteps import sample_timestep_indices, timestep_groups, timestep_range

__all__ = [
    "ADAPTERS",
    "GROUP_NAMES",
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "SCHEDULES",
    "WEIGHT_DECAY",
    "apply_trainable_set",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "diffusion_loss",
    "group_parameters",
    "is_attention_parameter",
    "is_trainable",
    "is_ttt_parameter",
    "lr_multiplier",
    "parameter_group_name",
    "sample_latents",
    "sample_timestep_indices",
    "skips_weight_decay",
    "text_dropout",
    "timestep_groups",
    "timestep_range",
]
