"""The DPM-Solver++(2M) SDE and DDIM samplers and the v -> x0 denoiser (spec 6.2-6.4, 13.3)."""

import math

import numpy as np
import pytest
import torch

from ttt_video.sampling import (
    ddim_step,
    dpmpp_2m_sde_step,
    sample,
    step_table,
    v_to_x0,
)

SHAPE = (1, 3, 2, 4, 5)


def _toy_denoiser(x: torch.Tensor, a: float, t: float, step: int) -> torch.Tensor:
    """A fixed, nonlinear stand-in for the guided DiT."""
    return 0.8 * torch.tanh(x) + 1e-3 * t - 0.05 * a


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- an independent float64 implementation of spec 6.2 / 6.4, written from the spec's pseudocode ---


def _lam(a: float) -> float:
    with np.errstate(divide="ignore"):
        return float(np.log(np.float64(a) / np.sqrt(1.0 - np.float64(a) ** 2)))


def _spec_dpmpp_step(x, x0, old, a_prev, a, a_next, draw):
    h = _lam(a_next) - _lam(a)
    m1 = np.sqrt((1 - a_next**2) / (1 - a**2)) * np.exp(-h)
    m2 = np.expm1(-2 * h) * a_next
    m_noise = np.sqrt(1 - a_next**2) * np.sqrt(1 - np.exp(-2 * h))
    x_std = m1 * x - m2 * x0 + m_noise * draw()
    if old is None:
        return x_std
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (_lam(a) - _lam(a_prev)) / h
        w = 1 / (2 * r)
    d = (1 + w) * x0 - w * old
    return m1 * x - m2 * d + m_noise * draw()


def _spec_sample_float64(x_T: torch.Tensor, table, seed: int) -> np.ndarray:
    gen = _generator(seed)

    def draw():
        return torch.randn(x_T.shape, generator=gen, dtype=torch.float32).double().numpy()

    x, old = x_T.double().numpy(), None
    a_values = [r.a for r in table] + [1.0]
    for i, row in enumerate(table):
        x0 = _toy_denoiser(torch.from_numpy(x), row.a, row.model_timestep, i).numpy()
        if i == len(table) - 1:
            return x0
        a_prev = a_values[i - 1] if i > 0 else None
        x, old = _spec_dpmpp_step(x, x0, old, a_prev, a_values[i], a_values[i + 1], draw), x0
    raise AssertionError("unreachable")


@pytest.mark.parametrize("n", [2, 3, 50])
def test_dpmpp_matches_float64_spec_implementation(n):
    table = step_table(n)
    x_T = torch.randn(SHAPE, generator=_generator(1))
    got = sample(_toy_denoiser, x_T, table, _generator(7))
    expected = _spec_sample_float64(x_T, table, seed=7)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=0, atol=2e-5)


def test_dpmpp_single_steps_match_the_spec_formulas():
    table = step_table(50)
    x, x0, old = (torch.randn(SHAPE, generator=_generator(s), dtype=torch.float64) for s in (1, 2, 3))
    for i in (0, 1, 2, 25, 48):
        a_prev = table[i - 1].a if i > 0 else None
        prev_x0 = old if i > 0 else None
        got = dpmpp_2m_sde_step(x, x0, prev_x0, a_prev, table[i].a, table[i].a_next, _generator(5))
        ref_gen = _generator(5)

        def draw(ref_gen=ref_gen):
            return torch.randn(SHAPE, generator=ref_gen, dtype=torch.float32).double().numpy()

        prev_np = old.numpy() if i > 0 else None
        expected = _spec_dpmpp_step(x.numpy(), x0.numpy(), prev_np, a_prev, table[i].a, table[i].a_next, draw)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12, err_msg=f"step {i}")


def test_dpmpp_first_steps_limits():
    table = step_table(50)
    x, x0, old = (torch.randn(SHAPE, generator=_generator(s), dtype=torch.float64) for s in (1, 2, 3))
    a1 = table[0].a_next
    eps = torch.randn(SHAPE, generator=_generator(9), dtype=torch.float32).double()
    # step 0 from pure noise: x = a_next x0 + sqrt(1 - a_next^2) eps, independent of x
    got0 = dpmpp_2m_sde_step(x, x0, None, None, 0.0, a1, _generator(9))
    torch.testing.assert_close(got0, a1 * x0 + math.sqrt(1 - a1 * a1) * eps, rtol=1e-12, atol=1e-12)
    # step 1: r = inf, so the history is ignored
    with_old = dpmpp_2m_sde_step(x, x0, old, 0.0, a1, table[1].a_next, _generator(9))
    with_other_old = dpmpp_2m_sde_step(x, x0, old * 7, 0.0, a1, table[1].a_next, _generator(9))
    torch.testing.assert_close(with_old, with_other_old, rtol=0, atol=0)


def _draws_used(gen: torch.Generator, shape, seed: int) -> int:
    """How many noise tensors of ``shape`` were drawn from ``gen`` since it was seeded with ``seed``."""
    probe = torch.randn(shape, generator=gen)
    fresh = _generator(seed)
    for k in range(200):
        if torch.equal(torch.randn(shape, generator=fresh), probe):
            return k
    raise AssertionError("draw count not found")


@pytest.mark.parametrize(("n", "draws"), [(1, 0), (2, 1), (3, 3), (50, 97)])
def test_dpmpp_draws_one_then_two_gaussians_per_step(n, draws):
    gen = _generator(3)
    sample(_toy_denoiser, torch.zeros(SHAPE), step_table(n), gen)
    assert _draws_used(gen, SHAPE, seed=3) == draws


def test_ddim_draws_nothing():
    gen = _generator(3)
    sample(_toy_denoiser, torch.zeros(SHAPE), step_table(50, sampler="ddim"), gen, sampler="ddim")
    assert _draws_used(gen, SHAPE, seed=3) == 0


def test_sampler_is_deterministic_given_the_generator():
    table = step_table(10)
    x_T = torch.randn(SHAPE, generator=_generator(1))
    first = sample(_toy_denoiser, x_T, table, _generator(11))
    again = sample(_toy_denoiser, x_T, table, _generator(11))
    other = sample(_toy_denoiser, x_T, table, _generator(12))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("sampler", ["dpmpp_2m_sde", "ddim"])
@pytest.mark.parametrize("n", [1, 2, 50, 1000])
def test_sampler_runs_any_number_of_steps(sampler, n):
    table = step_table(n, sampler=sampler)
    x_T = torch.randn(SHAPE, generator=_generator(1))
    calls = []
    out = sample(
        _toy_denoiser, x_T, table, _generator(2), sampler=sampler, callback=lambda i, t: calls.append((i, t))
    )
    assert out.shape == SHAPE and out.dtype == torch.float32 and bool(out.isfinite().all())
    assert calls == [(i, n) for i in range(n)]
    if n == 1:
        torch.testing.assert_close(out, _toy_denoiser(x_T, 0.0, 1000.0, 0), rtol=0, atol=0)


def _gaussian_posterior_mean(mu: float, s: float):
    """E[x0 | x_t] for data x0 ~ N(mu, s^2) per element and x_t = a x0 + sqrt(1 - a^2) eps."""

    def denoise(x, a, t, step):
        return mu + a * s * s / (a * a * s * s + 1 - a * a) * (x - a * mu)

    return denoise


def _final_gain(a_last: float, s: float) -> float:
    """The last step returns E[x0 | x] at ``a_last``, which maps x = a mu + R z to mu + gain * z."""
    return a_last * s * s / math.sqrt(a_last * a_last * s * s + 1 - a_last * a_last)


def test_dpmpp_samples_gaussian_data_with_the_right_statistics():
    mu, s = 0.7, 0.3
    x_T = torch.randn(50_000, generator=_generator(1))
    table = step_table(50)
    out = sample(_gaussian_posterior_mean(mu, s), x_T, table, _generator(2)).double()
    assert float(out.mean()) == pytest.approx(mu, abs=4 * s / math.sqrt(out.numel()))
    # 2M is about 1% off here (a first-order SDE step would be about 9% off); the estimate's own
    # noise is 0.3%
    assert float(out.std()) == pytest.approx(_final_gain(table[-1].a, s), rel=0.02)


def test_ddim_converges_to_the_probability_flow_of_gaussian_data():
    # For N(mu, s^2) data the flow keeps x = a mu + R z with z = x_T fixed (R = sqrt(a^2 s^2 + 1 - a^2)).
    mu, s = 0.7, 0.3
    x_T = torch.randn(1000, generator=_generator(1), dtype=torch.float64)
    errors = {}
    for n in (10, 50, 1000):
        table = step_table(n, sampler="ddim")
        out = sample(_gaussian_posterior_mean(mu, s), x_T, table, _generator(2), sampler="ddim").double()
        gain = float(((out - mu) * x_T).sum() / (x_T * x_T).sum())
        errors[n] = abs(gain / _final_gain(table[-1].a, s) - 1)
    assert errors[10] > errors[50] > errors[1000]
    # first order in the log-SNR step; the DDPM grid's last timesteps stay far apart in log-SNR
    # (t = 1 -> 0 is a step of 0.36), so even 1000 steps keep about 0.5%
    assert errors[1000] < 1e-2


def test_ddim_with_the_true_x0_stays_on_the_closed_form_path():
    table = step_table(50, sampler="ddim")
    x_star = torch.randn(SHAPE, generator=_generator(4))
    x_T = torch.randn(SHAPE, generator=_generator(5))
    seen = []

    def oracle(x, a, t, step):
        seen.append((a, x.clone()))
        return x_star

    out = sample(oracle, x_T, table, _generator(0), sampler="ddim")
    torch.testing.assert_close(out, x_star, rtol=0, atol=0)
    for a, x in seen:  # x_t = a x* + sqrt(1 - a^2) x_T at every step
        torch.testing.assert_close(x, a * x_star + math.sqrt(1 - a * a) * x_T, rtol=1e-5, atol=1e-5)


def test_ddim_one_step_equals_the_diffusers_formula_in_float64():
    table = step_table(50, sampler="ddim")
    x = torch.randn(SHAPE, generator=_generator(1), dtype=torch.float64)
    v = torch.randn(SHAPE, generator=_generator(2), dtype=torch.float64)
    for i in (0, 10, 48):
        abar_t, abar_prev = table[i].a ** 2, table[i].a_next ** 2
        x0 = math.sqrt(abar_t) * x - math.sqrt(1 - abar_t) * v
        a_t = math.sqrt((1 - abar_prev) / (1 - abar_t))
        b_t = math.sqrt(abar_prev) - math.sqrt(abar_t) * a_t
        torch.testing.assert_close(
            ddim_step(x, x0, table[i].a, table[i].a_next), a_t * x + b_t * x0, rtol=1e-13, atol=1e-13
        )


def test_v_to_x0_is_the_v_prediction_denoiser():
    x = torch.randn(SHAPE, generator=_generator(1))
    v = torch.randn(SHAPE, generator=_generator(2)).to(torch.bfloat16)
    a_q = step_table()[20].a_q
    got = v_to_x0(v, x, a_q)
    expected = a_q * x.double() - math.sqrt(1 - a_q * a_q) * v.double()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(v_to_x0(v, x, 0.0), -v.float(), rtol=0, atol=0)


def test_sample_rejects_bad_input():
    table = step_table(3)
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="eval.sampler"):
        sample(_toy_denoiser, x, table, _generator(0), sampler="euler")
    with pytest.raises(ValueError, match="empty"):
        sample(_toy_denoiser, x, [], _generator(0))
    with pytest.raises(ValueError, match="torch.Generator"):
        sample(_toy_denoiser, x, table, None)
    with pytest.raises(ValueError, match="sampling order"):
        sample(_toy_denoiser, x, table[::-1], _generator(0))
