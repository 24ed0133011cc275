"""One optimiser step of fine-tuning (spec 9.1, 9.2) on one rank.

The rank's batch (``global_batch_size / data-parallel ranks`` samples) runs as ``grad_accum_steps`` equal
micro-batches; each contributes ``mean(diffusion_loss) / grad_accum_steps`` to the gradient, so the
gradient is that of the local batch mean, and FSDP/HSDP average it over the data-parallel ranks (the
gradient of the global batch mean). Then: tensor-parallel partial gradients summed, the global norm
clipped to ``optimizer.gradient_clipping_norm``, AdamW and the schedule stepped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..runner import NonFiniteError
from .batches import Batch
from .grads import sum_tensor_parallel_partials, tensor_parallel_partials
from .loss import diffusion_loss
from .model_setup import TrainingModel
from .optim import clip_gradients


@dataclass(frozen=True)
class StepResult:
    loss: float  # the step's loss, averaged over the ranks
    grad_norm: float  # the global gradient norm before clipping
    lr: dict[str, float]  # the learning rate of each parameter group during the step


def mean_over_ranks(value: torch.Tensor) -> float:
    """The mean of a scalar over all ranks (tensor-parallel peers hold equal values, so this is the mean
    over the data-parallel ranks); the value itself in a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    total = value.detach().to(torch.float64).reshape(1)
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total)
    return float(total) / dist.get_world_size()


def batch_loss(trained: TrainingModel, batch: Batch, shift_scale: float) -> torch.Tensor:
    """``mean(diffusion_loss)`` over ``batch`` (float32 scalar, differentiable)."""
    device = trained.device
    with trained.autocast():
        per_sample = diffusion_loss(
            trained.model,
            batch.latents.to(device),
            batch.text.to(device),
            batch.timesteps.to(device),
            batch.noise.to(device),
            shift_scale=shift_scale,
        )
    return per_sample.mean()


def train_step(
    trained: TrainingModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batch: Batch,
    cfg: Any,
    step: int,
) -> StepResult:
    """Forward, backward, clip and update on this rank's ``batch`` for optimiser step ``step`` (1-based,
    named in errors). Raises ``NonFiniteError`` before updating anything when the loss or the gradient
    norm is NaN or infinite."""
    lr = {group["name"]: float(group["lr"]) for group in optimizer.param_groups}
    parts = cfg.training.grad_accum_steps
    total = torch.zeros((), dtype=torch.float64)
    for micro in batch.split(parts):
        loss = batch_loss(trained, micro, cfg.discretization.shift_scale)
        (loss / parts).backward()
        total += loss.detach().to(torch.float64).cpu() / parts
    mean_loss = mean_over_ranks(total)
    if not math.isfinite(mean_loss):
        raise NonFiniteError(
            f"the loss of step {step} is {mean_loss} (clips {', '.join(batch.clips)} on this rank); "
            "lower optimizer.lr / optimizer.lr_ssm or check the dataset and the initial weights"
        )
    if trained.tp_group is not None:
        sum_tensor_parallel_partials(tensor_parallel_partials(trained.model), trained.tp_group)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = float(clip_gradients(params, cfg.optimizer.gradient_clipping_norm))
    if not math.isfinite(grad_norm):
        raise NonFiniteError(
            f"the gradient norm of step {step} is {grad_norm} (the loss was {mean_loss:.6g}); "
            "lower optimizer.lr / optimizer.lr_ssm or check the initial weights"
        )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(mean_loss, grad_norm, lr)
