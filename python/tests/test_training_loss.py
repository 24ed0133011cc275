"""Fine-tuning objective (spec 9.1): the loss against a float64 recomputation, text dropout, posterior
sampling and the stratified timesteps."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from training_helpers import (
    tiny_batch,
    tiny_model,
)

from ttt_video.training import (
    diffusion_loss,
    sample_latents,
    sample_timestep_indices,
    text_dropout,
    timestep_groups,
    timestep_range,
)

pytestmark = pytest.mark.usefixtures("single_thread")

# ------------------------------------------------------------------------------------------------
# the loss
# ------------------------------------------------------------------------------------------------


def spec_grid_float64() -> np.ndarray:
    """Spec 6.1 written out in float64: scaled-linear betas, cumprod, sqrt, ZeroSNR rescale."""
    i = np.arange(1000, dtype=np.float64)
    betas = (math.sqrt(0.00085) + i * (math.sqrt(0.012) - math.sqrt(0.00085)) / 999) ** 2
    a = np.sqrt(np.cumprod(1.0 - betas))
    return (a - a[-1]) * a[0] / (a[0] - a[-1])


def test_loss_equals_float64_velocity_mse():
    # x0_hat - x0 = -s v + a (a x0 + s eps) - x0 = s (a eps - s x0 - v), so the spec's weighted x0 error
    # mean((x0_hat - x0)^2 / s^2) is mean((v - v*)^2) with v* = a eps - s x0 (s = sqrt(1 - a^2)).
    model = tiny_model()
    x0, text, noise = tiny_batch(4)
    index = torch.tensor([0, 219, 640, 999])
    loss = diffusion_loss(model, x0, text, index, noise)
    assert loss.shape == (4,) and loss.dtype == torch.float32 and torch.isfinite(loss).all()

    a = torch.from_numpy(spec_grid_float64()[index.numpy()]).view(-1, 1, 1, 1, 1)
    s = (1 - a * a).sqrt()
    x0_64, noise_64 = x0.double(), noise.double()
    model_64 = copy.deepcopy(model).double()
    with torch.no_grad():
        v = model_64(a * x0_64 + s * noise_64, text.double(), index)
    expected = (v - (a * noise_64 - s * x0_64)).square().flatten(1).mean(1)
    # Per sample, including a = 0 at index 999 (x_t = eps, weight 1, v* = -x0). Observed agreement ~3e-7;
    # feeding the bf16-rounded index instead would differ by ~1e-4 at index 999.
    torch.testing.assert_close(loss.detach().double(), expected, rtol=1e-5, atol=0)


def test_loss_feeds_the_model_fp32_x_t_and_the_integer_index():
    model = tiny_model()
    x0, text, noise = tiny_batch(2)
    index = torch.tensor([999, 259])  # both change under bf16 rounding (1000, 260)
    calls = []

    def spy(x_t, txt, timesteps):
        calls.append((x_t, timesteps))
        return model(x_t, txt, timesteps)

    diffusion_loss(spy, x0, text, index.int(), noise.bfloat16())
    ((x_t, fed),) = calls
    assert fed.dtype == torch.int64 and torch.equal(fed, index)
    grid = torch.from_numpy(spec_grid_float64()).float()
    a = grid[index].view(-1, 1, 1, 1, 1)
    expected = a * x0 + (1 - a * a).sqrt() * noise.bfloat16().float()
    assert x_t.dtype == torch.float32
    torch.testing.assert_close(x_t, expected, rtol=1e-6, atol=1e-6)


def test_loss_gradients_reach_every_parameter_that_can_matter():
    model = tiny_model()
    x0, text, noise = tiny_batch(2)
    diffusion_loss(model, x0, text, torch.tensor([100, 600]), noise).mean().backward()
    # The last layer's backward-TTT text gate only feeds text tokens, which the output never reads.
    dead = {"layers.1.seq_modeling_block.backward_ssm_gating_text.gating_alpha"}
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert bool((param.grad != 0).any()) == (name not in dead), name


def test_loss_rejects_bad_inputs():
    model = tiny_model()
    x0, text, noise = tiny_batch(2)
    with pytest.raises(TypeError, match="integer tensor"):
        diffusion_loss(model, x0, text, torch.tensor([1.0, 2.0]), noise)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        diffusion_loss(model, x0, text, torch.tensor([0, 1000]), noise)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        diffusion_loss(model, x0, text, torch.tensor([1]), noise)
    with pytest.raises(ValueError, match="noise has shape"):
        diffusion_loss(model, x0, text, torch.tensor([1, 2]), noise[:, :1])
    with pytest.raises(ValueError, match=r"text must be \(B, n, L, D\)"):
        diffusion_loss(model, x0, text[:1], torch.tensor([1, 2]), noise)
    with pytest.raises(ValueError, match="predict v"):
        diffusion_loss(lambda x, t, i: x[:, :1], x0, text, torch.tensor([1, 2]), noise)


# ------------------------------------------------------------------------------------------------
# text dropout and posterior sampling
# ------------------------------------------------------------------------------------------------


def test_text_dropout_rate_zeroing_and_determinism():
    text = torch.randn(20000, 2, 3, 4) + 5  # no element is 0 by chance
    out, dropped = text_dropout(text, 0.1, torch.Generator().manual_seed(1))
    # Binomial(20000, 0.1) has standard deviation 42: 5 sigma is 0.0106 on the rate.
    assert abs(dropped.float().mean().item() - 0.1) < 0.0106
    assert torch.equal(out[dropped], torch.zeros_like(out[dropped]))
    assert torch.equal(out[~dropped], text[~dropped])
    assert not text_dropout(text, 0.0, torch.Generator().manual_seed(1))[1].any()
    assert text_dropout(text, 1.0, torch.Generator().manual_seed(1))[1].all()

    first = text_dropout(text, 0.3, torch.Generator().manual_seed(7))
    second = text_dropout(text, 0.3, torch.Generator().manual_seed(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], text_dropout(text, 0.3, torch.Generator().manual_seed(8))[1])
    after = []
    for probability in (0.0, 0.3, 1.0):
        g = torch.Generator().manual_seed(7)
        text_dropout(text, probability, g)
        after.append(torch.rand(3, generator=g))
    assert torch.equal(after[0], after[1]) and torch.equal(after[0], after[2])


def test_text_dropout_null_text_and_errors():
    text = torch.randn(200, 2, 3, 4)
    null = torch.randn(3, 4)
    out, dropped = text_dropout(text, 0.5, torch.Generator().manual_seed(0), null_text=null)
    assert 0 < dropped.sum() < 200
    assert torch.equal(out[dropped], null.expand(int(dropped.sum()), 2, 3, 4))
    with pytest.raises(ValueError, match="does not broadcast"):
        text_dropout(text, 0.5, torch.Generator(), null_text=torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        text_dropout(text, 1.5, torch.Generator())
    with pytest.raises(ValueError, match=r"\(B, n, L, D\)"):
        text_dropout(text[0], 0.1, torch.Generator())


def test_sample_latents_formula_layout_and_clamp():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2, 3, 4, 2, 2, generator=g)
    logvar = torch.randn(2, 3, 4, 2, 2, generator=g)
    logvar[0, 0, 0, 0, 0], logvar[0, 0, 1, 0, 0] = 100.0, -100.0  # clamped to 20 and -30
    moments = torch.cat([mean, logvar], dim=2).bfloat16()
    latents = sample_latents(moments, 0.7, torch.Generator().manual_seed(3))
    eps = torch.randn(2, 3, 4, 2, 2, generator=torch.Generator().manual_seed(3))
    mean_b, logvar_b = mean.bfloat16().float(), logvar.bfloat16().float()
    std = torch.exp(0.5 * logvar_b.clamp(-30, 20))
    assert latents.shape == (2, 3, 4, 2, 2) and latents.dtype == torch.float32
    torch.testing.assert_close(latents, 0.7 * (mean_b + std * eps), rtol=1e-6, atol=1e-7)
    assert std[0, 0, 0, 0, 0] == pytest.approx(math.exp(10))
    assert std[0, 0, 1, 0, 0] == pytest.approx(math.exp(-15))
    with pytest.raises(ValueError, match=r"\(B, T, 2C, h, w\)"):
        sample_latents(moments[:, :, :7], 1.0, g)


# ------------------------------------------------------------------------------------------------
# stratified timesteps
# ------------------------------------------------------------------------------------------------


def brute_force_groups(world: int) -> tuple[int, int]:
    for i in range(1, world + 1):
        if world % i == 0 and 1000 % (world // i) == 0:
            return i, world // i
    raise AssertionError("unreachable: i = world always qualifies")


@pytest.mark.parametrize("world", [1, 2, 3, 6, 7, 16, 24, 64, 128, 256])
def test_timestep_groups_follow_the_rule(world):
    group_size, num_groups = timestep_groups(world)
    assert (group_size, num_groups) == brute_force_groups(world)
    assert num_groups == math.gcd(world, 1000)
    covered = []
    for rank in range(world):
        lo, hi = timestep_range(rank, world)
        g = rank // group_size
        assert (lo, hi) == (g * 1000 // num_groups, (g + 1) * 1000 // num_groups)
        if rank % group_size == 0:
            covered.extend(range(lo, hi))
    assert covered == list(range(1000))  # the groups tile the grid exactly


def test_timestep_spec_examples_and_sampling():
    assert timestep_groups(64) == (8, 8) and timestep_range(8, 64) == (125, 250)
    assert timestep_range(63, 64) == (875, 1000) and timestep_groups(256) == (32, 8)
    draws = sample_timestep_indices(5000, rank=9, world=64, generator=torch.Generator().manual_seed(0))
    assert draws.dtype == torch.int64 and draws.shape == (5000,)
    assert set(draws.tolist()) == set(range(125, 250))  # 125 values, 40 expected hits each
    again = sample_timestep_indices(5000, rank=9, world=64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    with pytest.raises(ValueError, match="out of range"):
        timestep_range(64, 64)
    with pytest.raises(ValueError, match="world"):
        timestep_groups(0)
    with pytest.raises(ValueError, match="batch"):
        sample_timestep_indices(0, 0, 1, torch.Generator())
