"""Trainable sets, parameter groups, AdamW, the LR schedules and gradient clipping (spec 9.2).

Parameters are classified by name (spec 4.1 names, case-insensitive):

* TTT: the name contains ``ttt`` or ``ssm`` (the TTT layer and the four tanh gates per layer);
* no weight decay: the name contains ``bias``, ``norm``, ``b1`` or ``b2``; the rest decays by 1e-4.

Trainable sets (``training.adapter_method``): ``sft`` everything; ``qkvo`` the attention projections
q, k, v, o with q_norm and k_norm, plus every TTT parameter and gate; ``ttt`` only the TTT parameters and
gates (not in the reference: the cheapest way to give converted weights working TTT layers). Frozen
parameters get ``requires_grad = False`` and belong to no optimiser group, so they have no AdamW state.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.optim.lr_scheduler import LambdaLR

from ..contracts.generated import OptimizerSection, TrainingSection

ADAPTERS = ("sft", "qkvo", "ttt")
SCHEDULES = ("linear", "cosine")
WEIGHT_DECAY = 1e-4
ADAMW_BETAS = (0.9, 0.95)
ADAMW_EPS = 1e-8
TTT_PATTERNS = ("ttt", "ssm")
NO_DECAY_PATTERNS = ("bias", "norm", "b1", "b2")
ATTENTION_MODULES = ("q", "k", "v", "o", "q_norm", "k_norm")
GROUP_NAMES = ("ttt_decay", "ttt_no_decay", "other_decay", "other_no_decay")
# Name parts inserted by activation checkpointing, torch.compile and FSDP1 wrappers; FSDP2 adds none.
WRAPPER_PARTS = ("_checkpoint_wrapped_module", "_orig_mod", "_fsdp_wrapped_module")


def is_ttt_parameter(name: str) -> bool:
    """True for TTT-layer parameters and the TTT gates (the name contains ``ttt`` or ``ssm``)."""
    return any(pattern in name.lower() for pattern in TTT_PATTERNS)


def skips_weight_decay(name: str) -> bool:
    """True for biases, norms and the TTT inner biases ``b1``/``b2``."""
    return any(pattern in name.lower() for pattern in NO_DECAY_PATTERNS)


def is_attention_parameter(name: str) -> bool:
    """True for ``...seq_modeling_block.{q,k,v,o,q_norm,k_norm}.{weight,bias}`` (not the TTT's wq..wo)."""
    parts = [part for part in name.split(".") if part not in WRAPPER_PARTS]
    return any(
        part == "seq_modeling_block" and following in ATTENTION_MODULES
        for part, following in zip(parts, parts[1:], strict=False)
    )


def is_trainable(name: str, adapter: str) -> bool:
    """Whether parameter ``name`` belongs to trainable set ``adapter`` (``sft``, ``qkvo`` or ``ttt``)."""
    _check_adapter(adapter)
    if adapter == "sft":
        return True
    if adapter == "qkvo":
        return is_ttt_parameter(name) or is_attention_parameter(name)
    return is_ttt_parameter(name)


def parameter_group_name(name: str) -> str:
    """One of ``GROUP_NAMES``: ``{ttt, other}_{decay, no_decay}``."""
    kind = "ttt" if is_ttt_parameter(name) else "other"
    return f"{kind}_{'no_decay' if skips_weight_decay(name) else 'decay'}"


def apply_trainable_set(model: nn.Module, adapter: str) -> int:
    """Set ``requires_grad`` of every parameter from trainable set ``adapter``; returns the trainable count."""
    _check_adapter(adapter)
    count = 0
    for name, param in model.named_parameters():
        trainable = is_trainable(name, adapter)
        param.requires_grad_(trainable)
        count += trainable
    return count


def group_parameters(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """The parameters with ``requires_grad``, by group name (all four keys present, possibly empty)."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in GROUP_NAMES}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[parameter_group_name(name)].append((name, param))
    return groups


def build_optimizer(
    model: nn.Module, optimizer_cfg: OptimizerSection, adapter: str | None
) -> torch.optim.AdamW:
    """Freeze everything outside ``adapter``'s set and build AdamW over the non-empty groups.

    Each group carries ``name`` (from ``GROUP_NAMES``) and ``is_ttt`` for ``build_scheduler``; lr is
    ``optimizer.lr_ssm`` for TTT groups and ``optimizer.lr`` otherwise; betas (0.9, 0.95), eps 1e-8.
    ``adapter=None`` (the config default) is an error, as in the reference: the set must be chosen.
    """
    if adapter is None:
        raise ValueError(
            "training.adapter_method is not set; choose the trainable set: 'sft' (all parameters), "
            "'qkvo' (attention q/k/v/o + q/k norms + TTT) or 'ttt' (TTT layers and gates only)"
        )
    _check_optimizer_cfg(optimizer_cfg)
    apply_trainable_set(model, adapter)
    param_groups = []
    for group_name, members in group_parameters(model).items():
        if not members:
            continue
        is_ttt = group_name.startswith("ttt")
        param_groups.append(
            {
                "params": [param for _, param in members],
                "lr": optimizer_cfg.lr_ssm if is_ttt else optimizer_cfg.lr,
                "weight_decay": 0.0 if group_name.endswith("no_decay") else WEIGHT_DECAY,
                "name": group_name,
                "is_ttt": is_ttt,
            }
        )
    if not param_groups:
        raise ValueError(
            f"training.adapter_method={adapter!r} leaves no trainable parameter in this model "
            "(a model built with ssm_layer='none' has no TTT parameters; use 'sft' or 'qkvo')"
        )
    return torch.optim.AdamW(param_groups, lr=optimizer_cfg.lr, betas=ADAMW_BETAS, eps=ADAMW_EPS)


def lr_multiplier(
    step: int, *, schedule: str, warmup_steps: int, total_steps: int, lr_peak: float, lr_end: float
) -> float:
    """The factor on ``lr_peak`` at optimiser step ``step`` (0-based), spec 9.2.

    Warm-up ``(step + 1) / warmup_steps`` for ``step < warmup_steps`` (none when ``warmup_steps = 0``),
    then with ``progress = min((step - warmup) / max(1, total - warmup), 1)``:
    linear ``1 - progress * (1 - lr_end / lr_peak)``; cosine
    ``(lr_end + (lr_peak - lr_end) * (1 + cos(pi * progress)) / 2) / lr_peak``. Both reach
    ``lr_end / lr_peak`` at ``step = total_steps`` and stay there (the reference's cosine has no clamp and
    would rise again past the end; training never gets there). ``lr_peak = 0`` gives 1 (the group's
    learning rate stays 0; ``lr_end`` does not apply to it).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr schedule must be one of {SCHEDULES}, got {schedule!r}")
    if lr_peak < 0 or lr_end < 0:
        raise ValueError(f"learning rates must be >= 0, got lr_peak={lr_peak}, lr_end={lr_end}")
    if lr_peak == 0:
        return 1.0
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(1, total_steps - warmup_steps), 1.0)
    if schedule == "linear":
        return 1.0 - progress * (1.0 - lr_end / lr_peak)
    return (lr_end + (lr_peak - lr_end) * 0.5 * (1.0 + math.cos(math.pi * progress))) / lr_peak


def build_scheduler(
    optimizer: torch.optim.Optimizer, optimizer_cfg: OptimizerSection, training_cfg: TrainingSection
) -> LambdaLR:
    """LambdaLR with one multiplier per group: ``lr_ssm_schedule``/``lr_ssm`` for TTT groups,
    ``lr_schedule``/``lr`` for the others, both ending at ``optimizer.lr_end`` after ``training.steps``.

    The multipliers are ``functools.partial`` objects without state, so a resumed scheduler takes the
    schedule from the current config and only its step count from the checkpoint.
    """
    _check_optimizer_cfg(optimizer_cfg)
    warmup, steps = training_cfg.warmup_steps, training_cfg.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"training.steps must be an int >= 1, got {steps!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= steps:
        raise ValueError(
            f"training.warmup_steps must be an int in [0, training.steps={steps}], got {warmup!r}"
        )
    multipliers = []
    for index, group in enumerate(optimizer.param_groups):
        if "is_ttt" not in group:
            raise ValueError(
                f"optimizer group {index} has no 'is_ttt' entry; build the optimizer with build_optimizer"
            )
        ttt = bool(group["is_ttt"])
        multipliers.append(
            functools.partial(
                lr_multiplier,
                schedule=optimizer_cfg.lr_ssm_schedule if ttt else optimizer_cfg.lr_schedule,
                warmup_steps=warmup,
                total_steps=steps,
                lr_peak=optimizer_cfg.lr_ssm if ttt else optimizer_cfg.lr,
                lr_end=optimizer_cfg.lr_end,
            )
        )
    return LambdaLR(optimizer, lr_lambda=multipliers)


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale gradients to global L2 norm <= ``max_norm`` (``optimizer.gradient_clipping_norm``).

    Returns the norm *before* clipping (a float32 scalar tensor; a plain tensor even under FSDP2, where
    the DTensor norm is gathered). A non-finite norm is returned as is (the loop may skip the step).
    ``max_norm = inf`` measures without clipping. Gradients that are DTensors (FSDP, tensor parallelism,
    possibly mixed with plain tensors) go through ``grads.clip_distributed_gradients``.
    """
    if not max_norm > 0:
        raise ValueError(
            f"optimizer.gradient_clipping_norm must be > 0 (inf measures without clipping), got {max_norm}"
        )
    parameters = list(parameters)
    if any(isinstance(p.grad, DTensor) for p in parameters):
        from .grads import clip_distributed_gradients

        return clip_distributed_gradients(parameters, max_norm)
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    full_tensor = getattr(norm, "full_tensor", None)
    return full_tensor() if callable(full_tensor) else norm


def _check_adapter(adapter: str) -> None:
    if adapter not in ADAPTERS:
        raise ValueError(f"training.adapter_method must be one of {ADAPTERS}, got {adapter!r}")


def _check_optimizer_cfg(cfg: OptimizerSection) -> None:
    if cfg.name != "AdamW":
        raise ValueError(f"optimizer.name must be 'AdamW' (the only optimiser), got {cfg.name!r}")
    for field in ("lr", "lr_ssm", "lr_end"):
        value = getattr(cfg, field)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"optimizer.{field} must be a finite number >= 0, got {value!r}")
    for field in ("lr_schedule", "lr_ssm_schedule"):
        if getattr(cfg, field) not in SCHEDULES:
            raise ValueError(f"optimizer.{field} must be one of {SCHEDULES}, got {getattr(cfg, field)!r}")
