"""Classifier-free guidance: the three scale schedules and the two-branch denoiser (spec 6.5)."""

import math

import numpy as np
import pytest
import torch

from ttt_video.sampling import (
    apply_cfg,
    guidance_scales,
    guided_denoiser,
    predict_v_pair,
    sample,
    sampling_timesteps,
    step_table,
)

TIMESTEPS_50 = list(range(999, 0, -20))


def test_reference_schedule_uses_num_steps_minus_timestep():
    scales = guidance_scales("reference", 50, 6, 5, TIMESTEPS_50)
    for i in (0, 2, 10, 35, 47, 49):
        k = np.float64(50 - TIMESTEPS_50[i])
        expected = 1 + 6 * (1 - np.cos(np.pi * np.power(k / 50, 5))) / 2
        assert scales[i] == pytest.approx(float(expected), rel=1e-9), i
    # a few values printed in spec 6.6
    assert [f"{scales[i]:.4f}" for i in (0, 2, 10, 35, 47, 49)] == [
        "2.2915",
        "6.9744",
        "1.0048",
        "6.9999",
        "1.0000",
        "1.1234",
    ]


def test_cosine_schedule_rises_from_one_to_one_plus_scale_by_step():
    scales = guidance_scales("cosine", 50, 6, 5, TIMESTEPS_50)
    for i in (0, 24, 40, 49):
        x = ((i + 1) / 50) ** 5
        assert scales[i] == pytest.approx(1 + 3 * (1 - np.cos(np.pi * x)), rel=1e-12), i
    assert scales[-1] == pytest.approx(7.0, rel=1e-15)
    assert scales[0] == pytest.approx(1.0, abs=1e-12)
    assert all(a <= b for a, b in zip(scales, scales[1:], strict=False))
    assert guidance_scales("cosine", 1, 6, 5, [999]) == [pytest.approx(7.0)]
    # any real exponent works for the cosine schedule
    assert guidance_scales("cosine", 4, 2, 0.5, [999, 749, 499, 249])[1] == pytest.approx(
        1 + (1 - math.cos(math.pi * math.sqrt(0.5)))
    )


def test_constant_schedule():
    assert guidance_scales("constant", 3, 4.5, 5, [999, 666, 333]) == [4.5, 4.5, 4.5]


def test_guidance_scales_rejects_bad_arguments():
    with pytest.raises(ValueError, match="guider.schedule"):
        guidance_scales("dynamic", 50, 6, 5, TIMESTEPS_50)
    with pytest.raises(ValueError, match="timesteps"):
        guidance_scales("reference", 50, 6, 5, TIMESTEPS_50[:-1])
    with pytest.raises(ValueError, match="integral"):
        guidance_scales("reference", 50, 6, 2.5, TIMESTEPS_50)
    with pytest.raises(ValueError, match="finite"):
        guidance_scales("constant", 50, math.nan, 5, TIMESTEPS_50)


def test_apply_cfg():
    u, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0])
    torch.testing.assert_close(apply_cfg(u, c, 1.0), c)
    torch.testing.assert_close(apply_cfg(u, c, 2.5), torch.tensor([6.0, -8.0]))


class TinyVelocityModel(torch.nn.Module):
    """A deterministic float64 stand-in for the DiT: per-sample, depends on latents, text and time."""

    def __init__(self, channels: int = 4, text_dim: int = 6):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.mix = torch.nn.Parameter(torch.randn(channels, channels, generator=gen, dtype=torch.float64))
        self.text_proj = torch.nn.Parameter(
            torch.randn(text_dim, channels, generator=gen, dtype=torch.float64)
        )
        self.calls: list[tuple[int, torch.dtype]] = []

    def forward(self, latents, text, timesteps):
        self.calls.append((latents.shape[0], latents.dtype))
        x = latents.to(torch.float64)
        h = torch.einsum("btchw,cd->btdhw", x, self.mix)
        bias = text.to(torch.float64).mean(dim=(1, 2)) @ self.text_proj  # (B, C)
        t = timesteps.to(torch.float64)[:, None, None, None, None] / 1000
        return torch.tanh(h + bias[:, None, :, None, None]) * (1 + t)


def _inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 3, 4, 2, 3, generator=gen, dtype=torch.float64)
    text_cond = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64)
    text_uncond = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64)
    return latents, text_cond, text_uncond


def test_cfg_batch_and_sequential_branches_agree():
    model = TinyVelocityModel()
    latents, text_cond, text_uncond = _inputs()
    t = torch.tensor([980.0])
    batched = predict_v_pair(model, latents, text_uncond, text_cond, t, cfg_batch=True)
    sequential = predict_v_pair(model, latents, text_uncond, text_cond, t, cfg_batch=False)
    assert [b for b, _ in model.calls] == [2, 1, 1]
    # float64 and per-sample math: only summation order inside the batched einsum may differ (ulps)
    for b, s in zip(batched, sequential, strict=True):
        torch.testing.assert_close(b, s, rtol=1e-12, atol=1e-12)
    # the uncond branch comes first in both
    torch.testing.assert_close(sequential[0], model(latents, text_uncond, t), rtol=0, atol=0)


def test_predict_v_pair_rejects_mismatched_text():
    latents, text_cond, _ = _inputs()
    with pytest.raises(ValueError, match="differ in shape"):
        predict_v_pair(
            TinyVelocityModel(), latents, text_cond[:, :1], text_cond, torch.tensor([1.0]), cfg_batch=True
        )


def test_guided_denoiser_is_cfg_on_the_x0_predictions():
    model = TinyVelocityModel()
    latents, text_cond, text_uncond = _inputs()
    table = step_table(50)
    denoise = guided_denoiser(model, text_cond, text_uncond, table)
    x = latents.float()
    for i in (0, 20, 49):
        row = table[i]
        got = denoise(x, row.a, row.model_timestep, i)
        t = torch.tensor([row.model_timestep])
        x64 = x.double()
        x0_u = row.a_q * x64 - math.sqrt(1 - row.a_q**2) * model(x64, text_uncond, t)
        x0_c = row.a_q * x64 - math.sqrt(1 - row.a_q**2) * model(x64, text_cond, t)
        expected = x0_u + row.guidance_scale * (x0_c - x0_u)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_guided_denoiser_feeds_the_model_dtype_and_the_table_timestep():
    seen = []

    def model(latents, text, timesteps):
        seen.append((latents.dtype, timesteps.dtype, timesteps.tolist()))
        return torch.zeros_like(latents)

    latents, text_cond, text_uncond = _inputs()
    table = step_table(50)
    denoise = guided_denoiser(
        model, text_cond, text_uncond, table, model_dtype=torch.bfloat16, cfg_batch=True
    )
    denoise(latents.float(), table[0].a, table[0].model_timestep, 0)
    assert seen == [(torch.bfloat16, torch.float32, [1000.0, 1000.0])]
    with pytest.raises(ValueError, match="step table"):
        denoise(latents.float(), table[1].a, table[1].model_timestep, 0)


def test_full_sampling_is_the_same_with_and_without_cfg_batch():
    model = TinyVelocityModel()
    latents, text_cond, text_uncond = _inputs()
    table = step_table(8)
    outs = []
    for cfg_batch in (True, False):
        denoise = guided_denoiser(
            model, text_cond, text_uncond, table, model_dtype=torch.float64, cfg_batch=cfg_batch
        )
        outs.append(sample(denoise, latents.float(), table, torch.Generator().manual_seed(3)))
    # v agrees to float64 ulps; the fp32 state can at most round differently by an ulp per step
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)


def test_step_table_guidance_column_uses_the_timesteps():
    table = step_table(20, guidance_scale=3, guidance_exp=2)
    timesteps = sampling_timesteps(20)[::-1]
    assert [r.guidance_scale for r in table] == guidance_scales("reference", 20, 3, 2, timesteps)
