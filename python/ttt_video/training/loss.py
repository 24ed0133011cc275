"""The fine-tuning objective (spec 9.1) and the per-batch randomness that feeds it (9.1, 9.3).

Notation as in ``ttt_video.sampling.schedule``: ``a = sqrt(alpha_bar)`` at a timestep index, the noise
level is ``s = sqrt(1 - a^2)``; ``a = 0`` at index 999 (pure noise, ZeroSNR) and ``a ~ 0.9996`` at index 0.

The loss is written as the reference writes it, an x0 error weighted by ``1 / s^2``:

    x_t    = a x0 + s eps
    x0_hat = -s v + a x_t
    loss   = mean((x0_hat - x0)^2 / s^2)

Since ``x0_hat - x0 = -s v + a s eps + (a^2 - 1) x0 = s (v* - v)`` with the velocity target
``v* = a eps - s x0``, the loss equals ``mean((v - v*)^2)``, the MSE on v. Every grid value has ``a < 1``
(``s^2 >= 8.5e-4`` at index 0) so the division is finite; at index 999, ``s = 1`` and the loss is
``mean((v + x0)^2)``.
"""

from __future__ import annotations

import functools

import torch

from ..sampling.guidance import VelocityModel
from ..sampling.schedule import NUM_TRAIN_TIMESTEPS, denoiser_grid

LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


@functools.lru_cache(maxsize=4)
def _cached_grid(shift_scale: float) -> torch.Tensor:
    return denoiser_grid(shift_scale)


def diffusion_loss(
    model: VelocityModel,
    latents: torch.Tensor,
    text: torch.Tensor,
    timestep_index: torch.Tensor,
    noise: torch.Tensor,
    *,
    shift_scale: float = 1.0,
) -> torch.Tensor:
    """Per-sample v-prediction loss of spec 9.1, float32, shape ``(B,)``; the caller takes the batch mean.

    ``latents (B, T, C, h, w)`` are the clean (scaled) VAE latents x0 as the DiT sees them, ``text
    (B, n, L, D)`` the text embeddings, ``timestep_index (B,)`` integer indices into the 1000-step grid
    ``sigmas1000`` (``denoiser_grid(shift_scale)``, the grid the sampler's denoiser uses), ``noise`` eps of
    the latents' shape (any float dtype; the reference draws it in bf16). ``x_t`` is formed in float32;
    the model receives it as is (it casts to its own dtype) together with the integer index, so the time
    embedding sees the exact index (float timesteps would be bf16-rounded, spec 4.2).
    """
    _check_loss_inputs(latents, text, timestep_index, noise)
    device = latents.device
    index = timestep_index.to(device=device, dtype=torch.int64)
    a = _cached_grid(float(shift_scale)).to(device)[index].view(-1, 1, 1, 1, 1)  # float32
    one_minus_a2 = 1.0 - a * a
    s = one_minus_a2.sqrt()
    x0 = latents.to(torch.float32)
    x_t = a * x0 + s * noise.to(device=device, dtype=torch.float32)
    v = model(x_t, text, index)
    if v.shape != latents.shape:
        raise ValueError(
            f"diffusion_loss: the model returned shape {tuple(v.shape)} for latents of shape "
            f"{tuple(latents.shape)}; it must predict v with the latents' shape"
        )
    x0_hat = -s * v.to(torch.float32) + a * x_t
    return ((x0_hat - x0).square() / one_minus_a2).flatten(1).mean(dim=1)


def _check_loss_inputs(
    latents: torch.Tensor, text: torch.Tensor, timestep_index: torch.Tensor, noise: torch.Tensor
) -> None:
    if latents.ndim != 5:
        raise ValueError(f"diffusion_loss: latents must be (B, T, C, h, w), got shape {tuple(latents.shape)}")
    batch = latents.shape[0]
    if text.ndim != 4 or text.shape[0] != batch:
        raise ValueError(
            f"diffusion_loss: text must be (B, n, L, D) with B = {batch} (the latents' batch), "
            f"got shape {tuple(text.shape)}"
        )
    if noise.shape != latents.shape:
        raise ValueError(
            f"diffusion_loss: noise has shape {tuple(noise.shape)} but the latents have "
            f"{tuple(latents.shape)}; draw eps with the latents' shape"
        )
    if timestep_index.shape != (batch,):
        raise ValueError(
            f"diffusion_loss: timestep_index must have shape ({batch},), got {tuple(timestep_index.shape)}"
        )
    if (
        timestep_index.is_floating_point()
        or timestep_index.is_complex()
        or timestep_index.dtype == torch.bool
    ):
        raise TypeError(
            f"diffusion_loss: timestep_index must be an integer tensor (grid indices 0..999), "
            f"got dtype {timestep_index.dtype}; use sample_timestep_indices or .long()"
        )
    low, high = int(timestep_index.min()), int(timestep_index.max())
    if low < 0 or high >= NUM_TRAIN_TIMESTEPS:
        raise ValueError(
            f"diffusion_loss: timestep indices must lie in [0, {NUM_TRAIN_TIMESTEPS - 1}], got min {low}, max {high}"
        )


def text_dropout(
    text: torch.Tensor,
    probability: float,
    generator: torch.Generator,
    null_text: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace a sample's whole text conditioning with probability ``probability``: ``(text, dropped)``.

    ``text (B, n, L, D)``; ``dropped`` is a bool ``(B,)`` mask. Dropped samples get zeros (what the
    reference intended, spec 9.1 [BUG]; SAT trained its unconditional branch on zeros) or, when given,
    ``null_text`` broadcast to ``(n, L, D)`` (e.g. T5("") embeddings, which the sampler's unconditional
    branch uses, spec 2.4). ``probability = 0`` reproduces the reference (nothing is dropped).

    Exactly ``B`` uniform numbers are drawn from ``generator`` (on its device) whatever the probability,
    so changing the probability does not shift the random streams drawn after it.
    """
    if text.ndim != 4:
        raise ValueError(f"text_dropout: text must be (B, n, L, D), got shape {tuple(text.shape)}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(
            f"text_dropout: probability must be in [0, 1] (training.text_dropout), got {probability}"
        )
    uniform = torch.rand(text.shape[0], generator=generator, device=generator.device)
    dropped = (uniform < probability).to(text.device)
    if null_text is None:
        replacement = torch.zeros((), dtype=text.dtype, device=text.device)
    else:
        try:
            replacement = torch.broadcast_to(null_text.to(text.device, text.dtype), text.shape[1:])
        except RuntimeError as error:
            raise ValueError(
                f"text_dropout: null_text of shape {tuple(null_text.shape)} does not broadcast to one "
                f"sample's text (n, L, D) = {tuple(text.shape[1:])}"
            ) from error
    return torch.where(dropped.view(-1, 1, 1, 1), replacement, text), dropped


def sample_latents(moments: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """A draw from the VAE posterior times ``scale`` (``model.scale_factor``), float32 (spec 9.3).

    ``moments (B, T, 2C, h, w)`` as the precomputed video files store them (per clip ``(T, 32, 60, 90)``):
    channels ``[0, C)`` are the mean, ``[C, 2C)`` the log-variance. Returns
    ``scale * (mean + exp(0.5 * clamp(logvar, -30, 20)) * randn)`` of shape ``(B, T, C, h, w)``.
    The normal draw is float32 on the generator's device; the reference held the result in bf16.
    """
    if moments.ndim != 5 or moments.shape[2] % 2:
        raise ValueError(
            "sample_latents: moments must be (B, T, 2C, h, w) with mean and log-variance stacked on the "
            f"channel axis, got shape {tuple(moments.shape)}"
        )
    mean, logvar = moments.to(torch.float32).chunk(2, dim=2)
    std = torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))
    eps = torch.randn(mean.shape, generator=generator, dtype=torch.float32, device=generator.device)
    return scale * (mean + std * eps.to(mean.device))
