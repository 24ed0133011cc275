"""The ZeroSNR DDPM schedule and the denoiser's 1000-step grid (spec 6.1, 6.3).

Notation: ``a = sqrt(alpha_bar)`` (SAT's ``alpha_cumprod_sqrt``); the noise level is ``sqrt(1 - a^2)``.
``a = 0`` is pure noise (t = 999 after the ZeroSNR rescale) and ``a = 1`` is clean data.
"""

from __future__ import annotations

import numpy as np
import torch

from .solvers import SAMPLERS

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


def alphas_cumprod(shift_scale: float = 1.0) -> torch.Tensor:
    """``alpha_bar`` of the scaled-linear DDPM schedule with the SNR shift, float64, indexed by timestep."""
    if not shift_scale > 0:
        raise ValueError(f"discretization.shift_scale must be > 0, got {shift_scale!r}")
    betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, NUM_TRAIN_TIMESTEPS, dtype=torch.float64) ** 2
    alpha_bar = torch.cumprod(1.0 - betas, dim=0)
    return alpha_bar / (shift_scale + (1.0 - shift_scale) * alpha_bar)


def sampling_timesteps(num_steps: int) -> list[int]:
    """The DDPM timesteps visited by an ``num_steps``-step sampler, ascending (19, 39, ..., 999 for 50)."""
    _check_num_steps(num_steps)
    if num_steps == NUM_TRAIN_TIMESTEPS:
        return list(range(NUM_TRAIN_TIMESTEPS))
    # numpy on purpose: the truncation of these floats must match the reference bit for bit.
    spaced = np.linspace(NUM_TRAIN_TIMESTEPS - 1, 0, num_steps, endpoint=False).astype(np.int64)
    return [int(t) for t in spaced[::-1]]


def _sqrt_f32(x: torch.Tensor) -> torch.Tensor:
    # torch's vectorised float32 sqrt on CPU is not always correctly rounded (about 1 in 5 of these
    # values is 1 ulp off); the reference ran on CUDA where it is. sqrt via float64 is exact to float32.
    return x.to(torch.float64).sqrt().to(torch.float32)


def zero_snr_rescale(alpha_bar_subset: torch.Tensor) -> torch.Tensor:
    """``a = sqrt(alpha_bar)`` in float32, rescaled so the last entry (t = 999) is exactly 0.

    ``alpha_bar_subset`` is ordered by ascending timestep. The first entry is kept unchanged:
    ``a <- (a - a_last) * a_first / (a_first - a_last)``. A single entry (one-step sampling) has no
    range to rescale over; it becomes 0, the ZeroSNR end point, so one step starts from pure noise.
    """
    a = _sqrt_f32(alpha_bar_subset.to(torch.float32))
    a_first, a_last = a[0].clone(), a[-1].clone()
    if a.numel() == 1:
        return torch.zeros_like(a)
    a -= a_last
    a *= a_first / (a_first - a_last)
    return a


def denoiser_grid(shift_scale: float = 1.0) -> torch.Tensor:
    """``sigmas1000``: the 1000-step ZeroSNR ``a`` values, float32, indexed by timestep (a[999] = 0)."""
    return zero_snr_rescale(alphas_cumprod(shift_scale))


def sampling_grid(num_steps: int, shift_scale: float = 1.0, sampler: str = "dpmpp_2m_sde") -> list[float]:
    """``a`` per step in sampling order (t = 999 first), the reference's ``A`` without the appended 1.

    ``dpmpp_2m_sde`` rescales over the selected timesteps (reference); ``ddim`` reads the 1000-step grid
    at those timesteps (diffusers' CogVideoXDDIMScheduler).
    """
    _check_sampler(sampler)
    timesteps = sampling_timesteps(num_steps)
    if sampler == "ddim":
        grid = denoiser_grid(shift_scale)
        a = grid[torch.tensor(timesteps)]
    else:
        a = zero_snr_rescale(alphas_cumprod(shift_scale)[torch.tensor(timesteps)])
    return [float(v) for v in a.flip(0)]


def quantize(a: float, grid: torch.Tensor) -> tuple[int, float]:
    """Nearest grid value to ``a`` (first one on a tie, like ``argmin``): (index, value)."""
    distances = (torch.tensor(a, dtype=torch.float32) - grid).abs()
    index = int(distances.argmin())
    return index, float(grid[index])


def bf16_round(t: float) -> float:
    """The timestep after the FSDP bf16 input cast of the reference (999 -> 1000, 259 -> 260, 239 -> 239)."""
    return float(torch.tensor(t, dtype=torch.float32).to(torch.bfloat16).to(torch.float32))


def _check_num_steps(num_steps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise TypeError(f"eval.num_denoising_steps must be an int, got {num_steps!r}")
    if not 1 <= num_steps <= NUM_TRAIN_TIMESTEPS:
        raise ValueError(
            f"eval.num_denoising_steps must be between 1 and {NUM_TRAIN_TIMESTEPS} "
            f"(the DDPM grid has {NUM_TRAIN_TIMESTEPS} timesteps), got {num_steps}"
        )


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"eval.sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
