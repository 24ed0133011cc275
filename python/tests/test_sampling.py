"""The schedule and the per-step table (spec 6.1, 6.3, 6.6)."""

import math

import numpy as np
import pytest
import torch

from ttt_video.sampling import (
    alphas_cumprod,
    bf16_round,
    denoiser_grid,
    quantize,
    sampling_grid,
    sampling_timesteps,
    step_table,
)

# Spec 6.6, copied verbatim: i | t | t_bf16 | a (50-grid) | q | a_q | cfg s
SPEC_6_6_TABLE = """
| 0 | 999 | 1000 | 0.000000 | 999 | 0.000000 | 2.2915 |
| 1 | 979 | 980 | 0.009268 | 979 | 0.009262 | 2.5435 |
| 2 | 959 | 960 | 0.019381 | 959 | 0.019369 | 6.9744 |
| 3 | 939 | 940 | 0.030373 | 939 | 0.030354 | 6.4204 |
| 4 | 919 | 920 | 0.042273 | 919 | 0.042247 | 2.7881 |
| 5 | 899 | 900 | 0.055108 | 899 | 0.055073 | 4.2719 |
| 6 | 879 | 880 | 0.068897 | 879 | 0.068854 | 1.0376 |
| 7 | 859 | 860 | 0.083656 | 859 | 0.083604 | 4.1704 |
| 8 | 839 | 840 | 0.099395 | 839 | 0.099332 | 1.6180 |
| 9 | 819 | 820 | 0.116114 | 819 | 0.116041 | 6.9831 |
| 10 | 799 | 800 | 0.133812 | 799 | 0.133728 | 1.0048 |
| 11 | 779 | 780 | 0.152477 | 779 | 0.152381 | 2.8720 |
| 12 | 759 | 760 | 0.172090 | 759 | 0.171982 | 6.9768 |
| 13 | 739 | 740 | 0.192627 | 739 | 0.192506 | 1.6331 |
| 14 | 719 | 720 | 0.214055 | 719 | 0.213920 | 4.3297 |
| 15 | 699 | 700 | 0.236333 | 699 | 0.236185 | 2.4366 |
| 16 | 679 | 680 | 0.259416 | 679 | 0.259253 | 6.3773 |
| 17 | 659 | 660 | 0.283249 | 659 | 0.283071 | 6.0068 |
| 18 | 639 | 640 | 0.307773 | 639 | 0.307580 | 3.4479 |
| 19 | 619 | 620 | 0.332921 | 619 | 0.332712 | 3.1981 |
| 20 | 599 | 600 | 0.358621 | 599 | 0.358396 | 1.6548 |
| 21 | 579 | 580 | 0.384798 | 579 | 0.384556 | 6.6100 |
| 22 | 559 | 560 | 0.411371 | 559 | 0.411112 | 1.1947 |
| 23 | 539 | 540 | 0.438255 | 539 | 0.437980 | 4.2953 |
| 24 | 519 | 520 | 0.465364 | 519 | 0.465072 | 6.9854 |
| 25 | 499 | 500 | 0.492609 | 499 | 0.492300 | 1.5213 |
| 26 | 479 | 480 | 0.519900 | 479 | 0.519574 | 1.7616 |
| 27 | 459 | 460 | 0.547147 | 459 | 0.546803 | 1.0579 |
| 28 | 439 | 440 | 0.574259 | 439 | 0.573898 | 4.1275 |
| 29 | 419 | 420 | 0.601147 | 419 | 0.600769 | 1.4823 |
| 30 | 399 | 400 | 0.627725 | 399 | 0.627331 | 2.0026 |
| 31 | 379 | 380 | 0.653909 | 379 | 0.653498 | 5.9477 |
| 32 | 359 | 360 | 0.679617 | 359 | 0.679191 | 4.1432 |
| 33 | 339 | 340 | 0.704774 | 339 | 0.704331 | 6.5305 |
| 34 | 319 | 320 | 0.729306 | 319 | 0.728847 | 6.1398 |
| 35 | 299 | 300 | 0.753146 | 299 | 0.752672 | 6.9999 |
| 36 | 279 | 280 | 0.776232 | 279 | 0.775744 | 6.1684 |
| 37 | 259 | 260 | 0.798509 | 259 | 0.798007 | 1.1199 |
| 38 | 239 | 239 | 0.819926 | 239 | 0.819411 | 2.0975 |
| 39 | 219 | 219 | 0.840441 | 218 | 0.840914 | 6.6850 |
| 40 | 199 | 199 | 0.860017 | 198 | 0.860430 | 6.9992 |
| 41 | 179 | 179 | 0.878623 | 178 | 0.878974 | 2.3432 |
| 42 | 159 | 159 | 0.896235 | 158 | 0.896526 | 6.2128 |
| 43 | 139 | 139 | 0.912837 | 138 | 0.913067 | 1.2505 |
| 44 | 119 | 119 | 0.928419 | 118 | 0.928587 | 6.9996 |
| 45 | 99 | 99 | 0.942975 | 98 | 0.943084 | 6.8644 |
| 46 | 79 | 79 | 0.956509 | 78 | 0.956558 | 1.0636 |
| 47 | 59 | 59 | 0.969028 | 58 | 0.969019 | 1.0000 |
| 48 | 39 | 39 | 0.980547 | 38 | 0.980480 | 1.0000 |
| 49 | 19 | 19 | 0.991082 | 18 | 0.990961 | 1.1234 |
"""


def _spec_rows() -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in SPEC_6_6_TABLE.strip().splitlines()
    ]


def test_spec_table_has_every_step():
    assert [int(r[0]) for r in _spec_rows()] == list(range(50))


@pytest.mark.parametrize("spec_row", _spec_rows(), ids=lambda r: f"step{r[0]}")
def test_step_table_reproduces_spec_6_6(spec_row):
    i, t, t_bf16, a, q, a_q, s = spec_row
    row = step_table()[int(i)]
    assert row.index == int(i)
    assert row.timestep == int(t)
    assert row.model_timestep == float(t_bf16)
    assert f"{row.a:.6f}" == a
    assert row.quantized_index == int(q)
    assert f"{row.a_q:.6f}" == a_q
    assert f"{row.guidance_scale:.4f}" == s


def test_step_table_links_steps_and_denoiser_coefficients():
    table = step_table()
    assert [r.a_next for r in table[:-1]] == [r.a for r in table[1:]]
    assert table[-1].a_next == 1.0
    for r in table:
        assert r.c_skip == r.a_q
        assert r.c_out == pytest.approx(-math.sqrt(1 - r.a_q**2), rel=1e-6)
        # the quantised index is t - 1 for t <= 219 (spec 6.3), t otherwise
        assert r.quantized_index == (r.timestep - 1 if r.timestep <= 219 else r.timestep)


def test_alphas_cumprod_matches_the_beta_formula_in_float64():
    i = np.arange(1000, dtype=np.float64)
    betas = (np.sqrt(0.00085) + i * (np.sqrt(0.012) - np.sqrt(0.00085)) / 999) ** 2
    expected = np.cumprod(1 - betas)
    got = alphas_cumprod()
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14, atol=0)


def test_shift_scale_is_the_snr_shift():
    base = alphas_cumprod(1.0)
    shifted = alphas_cumprod(3.0)
    torch.testing.assert_close(shifted, base / (3.0 - 2.0 * base), rtol=1e-15, atol=0)
    table = step_table(shift_scale=3.0)
    assert table[0].a == 0.0  # ZeroSNR end point survives the shift
    assert all(s.a < r.a for s, r in zip(table[1:], step_table()[1:], strict=True))
    with pytest.raises(ValueError, match="shift_scale"):
        step_table(shift_scale=0.0)


def test_sampling_timesteps():
    assert sampling_timesteps(50) == list(range(19, 1000, 20))
    assert sampling_timesteps(1) == [999]
    assert sampling_timesteps(2) == [499, 999]
    assert sampling_timesteps(1000) == list(range(1000))
    for n in (3, 7, 30, 333, 999):
        ts = sampling_timesteps(n)
        assert len(set(ts)) == n and ts == sorted(ts) and ts[-1] == 999


def test_denoiser_grid_is_the_1000_step_zero_snr_grid():
    grid = denoiser_grid()
    assert grid.dtype == torch.float32 and grid.shape == (1000,)
    assert grid[999] == 0.0
    assert float(grid[0]) == pytest.approx(0.9996, abs=1e-4)
    assert bool((grid[:-1] > grid[1:]).all())
    # the first value is kept by the rescale: sqrt(alpha_bar[0]) in float32
    assert float(grid[0]) == float(torch.tensor(alphas_cumprod()[0].item() ** 0.5, dtype=torch.float32))


def test_quantize_picks_the_nearest_grid_value():
    grid = denoiser_grid()
    assert quantize(0.0, grid) == (999, 0.0)
    assert quantize(float(grid[123]), grid) == (123, float(grid[123]))
    mid_low = float(grid[500]) * 0.25 + float(grid[501]) * 0.75
    assert quantize(mid_low, grid)[0] == 501


def test_bf16_round():
    assert [bf16_round(t) for t in (999, 979, 259, 257, 255, 239, 19, 0)] == [
        1000.0,
        980.0,
        260.0,
        256.0,
        255.0,
        239.0,
        19.0,
        0.0,
    ]


def test_step_table_switches():
    plain = step_table(timestep_bf16=False)
    assert [r.model_timestep for r in plain] == [float(r.timestep) for r in plain]
    quantised = step_table(quantize_c_noise=True)
    assert [r.model_timestep for r in quantised] == [bf16_round(r.quantized_index) for r in quantised]
    assert quantised[-1].model_timestep == 18.0
    constant = step_table(guidance_schedule="constant", guidance_scale=4.5)
    assert {r.guidance_scale for r in constant} == {4.5}


def test_ddim_table_reads_the_1000_grid():
    table = step_table(sampler="ddim")
    grid = denoiser_grid()
    assert [r.timestep for r in table] == list(range(999, 0, -20))
    assert [r.a for r in table] == [float(grid[r.timestep]) for r in table]
    assert [r.quantized_index for r in table] == [r.timestep for r in table]
    assert f"{table[-1].a:.6f}" == "0.990460"  # diffusers' value at t = 19 (spec 13.3)
    assert sampling_grid(50, sampler="ddim") == [r.a for r in table]


@pytest.mark.parametrize("n", [1, 2, 3, 50, 999, 1000])
def test_step_table_any_number_of_steps(n):
    table = step_table(n)
    assert len(table) == n
    assert table[0].timestep == 999 and table[0].a == 0.0 and table[0].a_q == 0.0
    assert table[-1].a_next == 1.0
    a = [r.a for r in table] + [1.0]
    assert all(x < y for x, y in zip(a, a[1:], strict=False))
    assert all(1.0 <= r.guidance_scale <= 7.0 for r in table)


def test_one_step_table_is_pure_noise_to_data():
    (row,) = step_table(1)
    assert (row.timestep, row.model_timestep, row.a, row.a_next, row.quantized_index) == (
        999,
        1000.0,
        0.0,
        1.0,
        999,
    )
    assert (row.c_skip, row.c_out) == (0.0, -1.0)


def test_1000_step_table_is_the_denoiser_grid():
    table = step_table(1000)
    grid = denoiser_grid()
    assert [r.a for r in table] == [float(grid[t]) for t in range(999, -1, -1)]
    assert [r.quantized_index for r in table] == list(range(999, -1, -1))


@pytest.mark.parametrize("bad", [0, -1, 1001])
def test_step_table_rejects_out_of_range_steps(bad):
    with pytest.raises(ValueError, match="num_denoising_steps"):
        step_table(bad)


def test_step_table_rejects_bad_arguments():
    with pytest.raises(TypeError, match="num_denoising_steps"):
        step_table(50.0)
    with pytest.raises(ValueError, match="eval.sampler"):
        step_table(sampler="euler")
    with pytest.raises(ValueError, match="guider.schedule"):
        step_table(guidance_schedule="linear")


def test_sigma_quantization_switch_uses_the_solver_grid():
    from ttt_video.sampling import step_table

    reference = step_table(50)
    intended = step_table(50, sigma_quantization=False)
    assert [r.a_q for r in intended] == [r.a for r in intended]
    assert [r.quantized_index for r in intended] == [r.timestep for r in intended]
    # the two differ where the 50-step rescale and the 1000-grid disagree (e.g. t = 19, spec 13.3)
    assert reference[-1].a_q != intended[-1].a_q
    assert [r.a for r in reference] == [r.a for r in intended]
