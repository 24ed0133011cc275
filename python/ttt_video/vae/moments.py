"""The VAE posterior stored as moments (spec 9.3): mean and log-variance stacked along the channel axis."""

from __future__ import annotations

import torch
from torch import Tensor

LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


def split_moments(moments: Tensor, dim: int = 1) -> tuple[Tensor, Tensor]:
    """`(..., 2C, ...)` -> mean, logvar `(..., C, ...)` (mean first, as the encoder writes them)."""
    if not isinstance(moments, Tensor) or not -moments.ndim <= dim < moments.ndim:
        shape = tuple(moments.shape) if isinstance(moments, Tensor) else type(moments).__name__
        raise ValueError(f"moments must be a tensor with a channel axis {dim}, got {shape}")
    if moments.shape[dim] % 2 != 0:
        raise ValueError(
            f"moments need an even channel count (mean then logvar) in dim {dim}, got shape "
            f"{tuple(moments.shape)}; stored clips are (T, 2C, h, w) and encoder outputs (B, 2C, T, h, w)"
        )
    mean, logvar = moments.chunk(2, dim=dim)
    return mean, logvar


def sample_from_moments(moments: Tensor, *, generator: torch.Generator, dim: int = 1) -> Tensor:
    """Draw a latent: `mean + exp(0.5 * clamp(logvar, -30, 20)) * noise`, noise ~ N(0, 1) from `generator`.

    `moments` is `(B, 2C, T, h, w)` from `encode` or a stored `(T, 2C, h, w)` clip (channels in `dim`).
    The noise is drawn in float32 on the generator's device, so one seed gives the same latent whatever
    the moments' dtype; the arithmetic is float32 and the result has the moments' dtype and device.
    The latent is unscaled: multiply by the model's latent scale yourself (1.0 for TTT-Video, spec 7.4).
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (explicit seeding), got {type(generator)}")
    mean, logvar = split_moments(moments, dim)
    noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32, device=generator.device)
    std = torch.exp(0.5 * logvar.float().clamp(LOGVAR_MIN, LOGVAR_MAX))
    latent = mean.float() + std * noise.to(mean.device)
    return latent.to(moments.dtype)
