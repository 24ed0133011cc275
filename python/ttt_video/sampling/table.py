"""The per-step table of a sampling run (spec 6.6): timesteps, grids, quantisation, guidance scales."""

from __future__ import annotations

from typing import Any

from .guidance import guidance_scales
from .schedule import bf16_round, denoiser_grid, quantize, sampling_grid, sampling_timesteps
from .solvers import denoiser_coefficients
from .step_row import StepRow


def step_table(
    num_steps: int = 50,
    shift_scale: float = 1.0,
    guidance_scale: float = 6,
    guidance_exp: float = 5,
    guidance_schedule: str = "reference",
    sampler: str = "dpmpp_2m_sde",
    timestep_bf16: bool = True,
    quantize_c_noise: bool = False,
    sigma_quantization: bool = True,
) -> list[StepRow]:
    """One row per sampler step, in sampling order; reproduces spec 6.6 with the defaults.

    ``timestep_bf16`` rounds the timestep the DiT embeds to bf16 (reference inference quirk).
    ``quantize_c_noise`` feeds the DiT the quantised 1000-grid index instead of the timestep.
    ``sigma_quantization`` (reference) converts v -> x0 with the nearest 1000-grid value; when False the
    solver's own ``a`` is used (and ``quantized_index`` is the step's timestep).
    """
    timesteps_desc = sampling_timesteps(num_steps)[::-1]
    a_values = sampling_grid(num_steps, shift_scale, sampler)
    grid = denoiser_grid(shift_scale)
    scales = guidance_scales(guidance_schedule, num_steps, guidance_scale, guidance_exp, timesteps_desc)

    rows = []
    for i, (t, a) in enumerate(zip(timesteps_desc, a_values, strict=True)):
        q, a_q = quantize(a, grid) if sigma_quantization else (t, a)
        c_skip, c_out = denoiser_coefficients(a_q)
        fed = float(q) if quantize_c_noise else float(t)
        rows.append(
            StepRow(
                index=i,
                timestep=t,
                model_timestep=bf16_round(fed) if timestep_bf16 else fed,
                a=a,
                a_next=a_values[i + 1] if i + 1 < num_steps else 1.0,
                quantized_index=q,
                a_q=a_q,
                c_skip=c_skip,
                c_out=c_out,
                guidance_scale=scales[i],
            )
        )
    return rows


def step_table_for(cfg: Any) -> list[StepRow]:
    """The table a job config asks for (``faithfulness.timestep_bf16 = "auto"`` follows the DiT dtype)."""
    from ..contracts.config import dtype_quirk

    return step_table(
        cfg.eval.num_denoising_steps,
        shift_scale=cfg.discretization.shift_scale,
        guidance_scale=cfg.guider.scale,
        guidance_exp=cfg.guider.exp,
        guidance_schedule=cfg.guider.schedule,
        sampler=cfg.eval.sampler,
        timestep_bf16=dtype_quirk(cfg, cfg.faithfulness.timestep_bf16),
        quantize_c_noise=cfg.denoiser.quantize_c_noise,
        sigma_quantization=cfg.faithfulness.sigma_quantization,
    )


def format_step_table(config: dict[str, Any]) -> str:
    """The table of a (resolved) config object as aligned text (the CLI's --dry-run shows it)."""
    from ..contracts.config import validate_config

    rows = step_table_for(validate_config(config))
    lines = [" step     t  t_model        a   a_next  idx      a_q   scale"]
    for r in rows:
        lines.append(
            f"{r.index:5d} {r.timestep:5d} {r.model_timestep:8.1f} {r.a:8.6f} {r.a_next:8.6f} "
            f"{r.quantized_index:4d} {r.a_q:8.6f} {r.guidance_scale:7.4f}"
        )
    return "\n".join(lines)
