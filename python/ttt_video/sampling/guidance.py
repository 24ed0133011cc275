"""Classifier-free guidance: the per-step scale schedules and the two-branch (uncond, cond) denoiser.

Guidance is applied where the reference applies it: on the x0 predictions, in float32,
``x0 = x0_uncond + s * (x0_cond - x0_uncond)`` (equivalent to guiding v, spec 6.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from .solvers import DenoiseFn, v_to_x0

if TYPE_CHECKING:
    from .step_row import StepRow

GUIDANCE_SCHEDULES = ("reference", "cosine", "constant")

VelocityModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``model(latents (B,T,C,H,W), text (B,n,L,D), timesteps (B,)) -> v (B,T,C,H,W)``."""


def _dynamic_cfg(scale: float, exp: float, step_index: float, num_steps: int) -> float:
    # Same expression and evaluation order as the reference (Python double precision).
    return 1 + scale * (1 - math.cos(math.pi * (step_index / num_steps) ** exp)) / 2


def guidance_scales(
    schedule: str, num_steps: int, scale: float, exp: float, timesteps: Sequence[int]
) -> list[float]:
    """The guidance scale of each step, in sampling order.

    * ``reference``: the reference's dynamic CFG evaluated at ``num_steps - t`` with ``t`` the DDPM
      timestep of the step (its bug, spec 6.5): an erratic but fixed sequence in [1, 1 + scale].
    * ``cosine``: the intended dynamic CFG at ``k = step + 1``, rising from ~1 to exactly ``1 + scale``
      at the last step.
    * ``constant``: ``scale`` at every step (plain CFG; 1 disables guidance).

    ``timesteps`` are the DDPM timesteps of the steps in sampling order (999, 979, ..., 19 for 50).
    """
    if schedule not in GUIDANCE_SCHEDULES:
        raise ValueError(f"guider.schedule must be one of {', '.join(GUIDANCE_SCHEDULES)}; got {schedule!r}")
    if len(timesteps) != num_steps:
        raise ValueError(f"guidance_scales: got {len(timesteps)} timesteps for num_steps = {num_steps}")
    if not (math.isfinite(scale) and math.isfinite(exp)):
        raise ValueError(f"guider.scale and guider.exp must be finite, got {scale!r} and {exp!r}")
    if schedule == "constant":
        return [float(scale)] * num_steps
    if schedule == "cosine":
        return [_dynamic_cfg(scale, exp, k + 1, num_steps) for k in range(num_steps)]
    if float(exp) != int(exp):
        # (num_steps - t) is negative, and a negative base to a fractional power has no real value.
        raise ValueError(f"guider.schedule 'reference' needs an integral guider.exp, got {exp!r}")
    return [_dynamic_cfg(scale, exp, num_steps - int(t), num_steps) for t in timesteps]


def apply_cfg(x0_uncond: torch.Tensor, x0_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """``x0_uncond + scale * (x0_cond - x0_uncond)``."""
    return x0_uncond + scale * (x0_cond - x0_uncond)


def predict_v_pair(
    model: VelocityModel,
    latents: torch.Tensor,
    text_uncond: torch.Tensor,
    text_cond: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    cfg_batch: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """v of the unconditional and the conditional branch at the same latents and timesteps.

    ``cfg_batch=True`` runs both as one batch ``[uncond, cond]`` (faster on a GPU);
    ``cfg_batch=False`` runs them one after the other, uncond first, as the reference does.
    """
    if text_uncond.shape != text_cond.shape:
        raise ValueError(
            f"uncond and cond text embeddings differ in shape: {tuple(text_uncond.shape)} vs "
            f"{tuple(text_cond.shape)} (encode the negative prompt with the same segments and length)"
        )
    if not cfg_batch:
        return model(latents, text_uncond, timesteps), model(latents, text_cond, timesteps)
    v = model(
        torch.cat([latents, latents]), torch.cat([text_uncond, text_cond]), torch.cat([timesteps, timesteps])
    )
    v_uncond, v_cond = v.chunk(2)
    return v_uncond, v_cond


def guided_denoiser(
    model: VelocityModel,
    text_cond: torch.Tensor,
    text_uncond: torch.Tensor,
    table: Sequence[StepRow],
    *,
    model_dtype: torch.dtype | None = None,
    cfg_batch: bool = False,
) -> DenoiseFn:
    """The ``denoise_fn`` for ``sample``: both branches of the DiT, v -> x0 with the step's quantised
    ``a_q``, then guidance with the step's scale. The DiT input is cast to ``model_dtype`` (if given);
    the timestep is passed as float32, already rounded as the table says."""

    def denoise(x: torch.Tensor, a: float, model_timestep: float, step: int) -> torch.Tensor:
        row = table[step]
        if a != row.a or model_timestep != row.model_timestep:
            raise ValueError(f"guided_denoiser: step {step} was called with values not from its step table")
        latents = x if model_dtype is None else x.to(model_dtype)
        timesteps = torch.full((x.shape[0],), model_timestep, dtype=torch.float32, device=x.device)
        v_uncond, v_cond = predict_v_pair(
            model, latents, text_uncond, text_cond, timesteps, cfg_batch=cfg_batch
        )
        x0_uncond = v_to_x0(v_uncond, x, row.a_q)
        x0_cond = v_to_x0(v_cond, x, row.a_q)
        return apply_cfg(x0_uncond, x0_cond, row.guidance_scale)

    return denoise
