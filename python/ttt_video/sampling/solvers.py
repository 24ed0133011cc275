"""The v -> x0 denoiser (spec 6.3), the DPM-Solver++(2M) SDE step (6.4), v-prediction DDIM (13.3),
and the sampling loop that runs either over a step table.

The state ``x`` is float32 throughout; the noise comes only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .step_row import StepRow

SAMPLERS = ("dpmpp_2m_sde", "ddim")

DenoiseFn = Callable[[torch.Tensor, float, float, int], torch.Tensor]
"""``denoise_fn(x, a, model_timestep, step) -> x0``: the guided x0 prediction at step ``step``."""

StepCallback = Callable[[int, int], None]
"""``callback(step, total)``: called after step ``step`` (0-based) of ``total`` has finished."""


def denoiser_coefficients(a_q: float) -> tuple[float, float]:
    """``(c_skip, c_out) = (a_q, -sqrt(1 - a_q^2))``, in float32 as the reference computes them."""
    a = torch.tensor(a_q, dtype=torch.float32)
    one_minus_a2 = 1 - a * a
    c_out = -one_minus_a2.to(torch.float64).sqrt().to(torch.float32)
    return float(a), float(c_out)


def v_to_x0(v: torch.Tensor, x: torch.Tensor, a_q: float) -> torch.Tensor:
    """x0 from the DiT's v prediction: ``c_out * v + c_skip * x`` in float32 (``c_in = 1``)."""
    c_skip, c_out = denoiser_coefficients(a_q)
    return v.to(torch.float32) * c_out + x.to(torch.float32) * c_skip


def _half_log_snr(a: float) -> float:
    """``lambda(a) = log(a / sqrt(1 - a^2))``; -inf at pure noise (a = 0), +inf at clean data (a = 1)."""
    if a <= 0.0:
        return -math.inf
    if a >= 1.0:
        return math.inf
    return math.log(a / math.sqrt(1.0 - a * a))


@dataclass(frozen=True)
class DpmppCoefficients:
    """``x_next = x_mult * x - x0_mult * D + noise_mult * eps`` with ``D = d_mult * x0 - old_mult * old``.

    ``x0_mult`` is ``expm1(-2h) * a_next`` (negative), kept with the reference's sign convention.
    """

    x_mult: float
    x0_mult: float
    noise_mult: float
    d_mult: float
    old_mult: float


def dpmpp_2m_sde_coefficients(a_prev: float | None, a: float, a_next: float) -> DpmppCoefficients:
    """The multipliers of spec 6.4, computed in float64 (the infinities at a = 0 resolve to limits)."""
    lam, lam_next = _half_log_snr(a), _half_log_snr(a_next)
    h = lam_next - lam
    exp_neg_h = math.exp(-h)
    x_mult = math.sqrt((1.0 - a_next * a_next) / (1.0 - a * a)) * exp_neg_h
    x0_mult = math.expm1(-2.0 * h) * a_next
    noise_mult = math.sqrt(1.0 - a_next * a_next) * math.sqrt(-math.expm1(-2.0 * h))
    if a_prev is None:
        return DpmppCoefficients(x_mult, x0_mult, noise_mult, d_mult=1.0, old_mult=0.0)
    r = (lam - _half_log_snr(a_prev)) / h  # +inf at step 1 (a_prev = 0): D = x0
    half_inv_r = 1.0 / (2.0 * r)
    return DpmppCoefficients(x_mult, x0_mult, noise_mult, d_mult=1.0 + half_inv_r, old_mult=half_inv_r)


def gaussian_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``x``'s shape, drawn in float32 on the generator's device (the stream does
    not depend on where ``x`` lives), then moved to ``x``'s device and dtype."""
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=generator.device)
    return noise.to(device=x.device, dtype=x.dtype)


def dpmpp_2m_sde_step(
    x: torch.Tensor,
    x0: torch.Tensor,
    old_x0: torch.Tensor | None,
    a_prev: float | None,
    a: float,
    a_next: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """One stochastic DPM-Solver++(2M) step from ``a`` to ``a_next`` (spec 6.4).

    Like the reference, the first-order update always draws its noise; after the first step that
    result is discarded and the second-order update draws a second, fresh noise.
    """
    if old_x0 is not None and a_prev is None:
        raise ValueError("dpmpp_2m_sde_step: old_x0 was given without a_prev (the previous step's a)")
    c = dpmpp_2m_sde_coefficients(a_prev if old_x0 is not None else None, a, a_next)
    first_noise = gaussian_like(x, generator)
    if old_x0 is None:
        return c.x_mult * x - c.x0_mult * x0 + c.noise_mult * first_noise
    d = c.d_mult * x0 - c.old_mult * old_x0
    return c.x_mult * x - c.x0_mult * d + c.noise_mult * gaussian_like(x, generator)


def ddim_step(x: torch.Tensor, x0: torch.Tensor, a: float, a_next: float) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from ``a`` to ``a_next``: ``x_next = k x + (a_next - a k) x0``,
    ``k = sqrt((1 - a_next^2) / (1 - a^2))`` (diffusers' CogVideoXDDIMScheduler, spec 13.3)."""
    k = math.sqrt((1.0 - a_next * a_next) / (1.0 - a * a))
    return k * x + (a_next - a * k) * x0


def sample(
    denoise_fn: DenoiseFn,
    x_T: torch.Tensor,
    table: Sequence[StepRow],
    generator: torch.Generator | None,
    *,
    sampler: str = "dpmpp_2m_sde",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Run the sampler over ``table`` (from ``step_table``) starting at noise ``x_T``; returns x0.

    The last step returns the x0 prediction itself (no noise is added). ``dpmpp_2m_sde`` draws one
    Gaussian at step 0 and two at each later step but the last; ``ddim`` draws none (``generator`` may
    then be None). ``callback(step, total)`` runs after every step, the last included.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"eval.sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if generator is None and sampler == "dpmpp_2m_sde" and len(table) > 1:
        raise ValueError("sampler 'dpmpp_2m_sde' draws noise: pass a torch.Generator (see video_generator)")
    if len(table) == 0:
        raise ValueError("the step table is empty; build it with step_table(num_steps >= 1)")
    total = len(table)
    x = x_T.to(torch.float32)
    old_x0: torch.Tensor | None = None
    for i, row in enumerate(table):
        if row.index != i:
            raise ValueError(f"step table row {i} has index {row.index}; pass the rows in sampling order")
        x0 = denoise_fn(x, row.a, row.model_timestep, i).to(torch.float32)
        if i == total - 1:
            x = x0
        elif sampler == "ddim":
            x = ddim_step(x, x0, row.a, row.a_next)
        else:
            assert generator is not None  # checked above
            a_prev = table[i - 1].a if i > 0 else None
            x = dpmpp_2m_sde_step(x, x0, old_x0, a_prev, row.a, row.a_next, generator)
            old_x0 = x0
        if callback is not None:
            callback(i, total)
    return x
