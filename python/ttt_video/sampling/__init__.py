"""Sampling math: the ZeroSNR schedule, DPM-Solver++(2M) SDE / DDIM, classifier-free guidance, seeds.

See docs/sampling.md. The pipeline builds ``table = step_table(...)``, ``denoise = guided_denoiser(...)``
and ``x0 = sample(denoise, initial_noise(shape, gen), table, gen, sampler=...)``.
"""

from .guidance import (
    GUIDANCE_SCHEDULES,
    VelocityModel,
    apply_cfg,
    guidance_scales,
    guided_denoiser,
    predict_v_pair,
)
from .schedule import (
    NUM_TRAIN_TIMESTEPS,
    alphas_cumprod,
    bf16_round,
    denoiser_grid,
    quantize,
    sampling_grid,
    sampling_timesteps,
    zero_snr_rescale,
)
from .seeds import initial_noise, video_generator, video_seed
from .solvers import (
    SAMPLERS,
    DenoiseFn,
    DpmppCoefficients,
    StepCallback,
    ddim_step,
    denoiser_coefficients,
    dpmpp_2m_sde_coefficients,
    dpmpp_2m_sde_step,
    gaussian_like,
    sample,
    v_to_x0,
)
from .step_row import StepRow
from .table import format_step_table, step_table, step_table_for

__all__ = [
    "GUIDANCE_SCHEDULES",
    "NUM_TRAIN_TIMESTEPS",
    "SAMPLERS",
    "DenoiseFn",
    "DpmppCoefficients",
    "StepCallback",
    "StepRow",
    "VelocityModel",
    "alphas_cumprod",
    "apply_cfg",
    "bf16_round",
    "ddim_step",
    "denoiser_coefficients",
    "denoiser_grid",
    "dpmpp_2m_sde_coefficients",
    "dpmpp_2m_sde_step",
    "gaussian_like",
    "guidance_scales",
    "guided_denoiser",
    "initial_noise",
    "predict_v_pair",
    "quantize",
    "sample",
    "sampling_grid",
    "sampling_timesteps",
    "step_table",
    "step_table_for",
    "format_step_table",
    "v_to_x0",
    "video_generator",
    "video_seed",
    "zero_snr_rescale",
]
