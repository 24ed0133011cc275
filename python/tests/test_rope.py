"""3-D RoPE: frequencies, window-local positions in attention, global positions in TTT, the bf16 switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ttt_video.models import (
    SequenceLayout,
    TTTVideoDiT,
    apply_rotary,
    build_config,
    build_ttt_pass_plan,
    rope_angles,
    video_positions,
)
from ttt_video.models.attention import LocalAttention, build_attention_plan
from ttt_video.models.rope import axis_dims

pytestmark = pytest.mark.usefixtures("single_thread")


def independent_angles(t: int, h: int, w: int, d: int, theta: float = 10000.0) -> list[float]:
    """Spec 4.4 for d = 64 generalised: pairs [0, d/8) time, then 3d/16 height, then 3d/16 width."""
    nt, nh = d // 8, 3 * d // 16
    angles = []
    for m in range(d // 2):
        if m < nt:
            angles.append(t * theta ** (-2 * m / (2 * nt)))
        elif m < nt + nh:
            angles.append(h * theta ** (-2 * (m - nt) / (2 * nh)))
        else:
            angles.append(w * theta ** (-2 * (m - nt - nh) / (2 * nh)))
    return angles


def independent_rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Complex multiplication of adjacent pairs; ``x (..., d)``, ``angles (..., d/2)`` broadcastable."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(-2)


def test_axis_split():
    assert axis_dims(64) == (16, 24, 24)
    assert axis_dims(32) == (8, 12, 12)
    with pytest.raises(ValueError, match="multiple of 16"):
        axis_dims(40)


@pytest.mark.parametrize("d", [32, 64])
def test_angles_match_spec(d):
    positions = torch.tensor([[0, 0, 0], [3, 7, 11], [12, 29, 44], [200, 1, 2]])
    angles = rope_angles(positions, d, 10000.0)
    expected = torch.tensor([independent_angles(*p.tolist(), d) for p in positions], dtype=torch.float64)
    torch.testing.assert_close(angles, expected, rtol=1e-13, atol=1e-12)


def test_apply_rotary_is_complex_multiplication():
    x = torch.randn(5, 3, 64, dtype=torch.float64)
    angles = torch.rand(5, 1, 32, dtype=torch.float64) * 10
    got = apply_rotary(x, angles.cos(), angles.sin())
    torch.testing.assert_close(got, independent_rotate(x, angles), rtol=1e-13, atol=1e-13)


def test_video_positions_row_major():
    pos = video_positions(3, 4, 6)
    for index in (0, 5, 6, 23, 24, 71):
        assert pos[index].tolist() == [index // 24, (index % 24) // 6, index % 6]


def test_attention_tables_are_window_local():
    layout = SequenceLayout(3, 5, 37, 4, 6)
    plan = build_attention_plan(layout, 32, 10000.0, rope_bf16=False, dtype=torch.float64)
    assert plan.rope_cos.shape == (13 * 24, 1, 16)
    expected = torch.tensor(
        [independent_angles(t, h, w, 32) for t in range(13) for h in range(4) for w in range(6)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(plan.rope_cos[:, 0], expected.cos(), rtol=0, atol=1e-15)
    torch.testing.assert_close(plan.rope_sin[:, 0], expected.sin(), rtol=0, atol=1e-15)
    assert plan.frame_weight.tolist() == [0.5 if f in (12, 24) else 1.0 for f in range(37)]


def test_local_attention_equals_independent_windows():
    """Each window: its own prompt, window-local (t, h, w), SDPA; overlap frames averaged (spec 4.4)."""
    torch.manual_seed(0)
    n, L, gh, gw, dim, heads = 3, 4, 2, 3, 64, 2
    layout = SequenceLayout(n, L, 12 * n + 1, gh, gw)
    P, nT = gh * gw, n * L
    attn = LocalAttention(dim, heads, 1e-6).double()
    with torch.no_grad():
        for norm in (attn.q_norm, attn.k_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, layout.num_tokens, dim, dtype=torch.float64)
    plan = build_attention_plan(layout, dim // heads, 10000.0, rope_bf16=False, dtype=torch.float64)
    with torch.no_grad():
        got = attn.attend(x, layout, plan)

        angles = torch.tensor(
            [independent_angles(t, h, w, 32) for t in range(13) for h in range(gh) for w in range(gw)],
            dtype=torch.float64,
        )[:, None]
        text_out = torch.zeros(2, nT, dim, dtype=torch.float64)
        video_sum = torch.zeros(2, layout.num_video_tokens, dim, dtype=torch.float64)
        video_count = torch.zeros(layout.num_video_tokens, 1, dtype=torch.float64)
        for i in range(n):
            text = x[:, i * L : (i + 1) * L]
            frames = slice(nT + 12 * i * P, nT + (12 * i + 13) * P)
            window = torch.cat([text, x[:, frames]], 1)
            q = attn.q_norm(attn.q(window).view(2, -1, heads, 32))
            k = attn.k_norm(attn.k(window).view(2, -1, heads, 32))
            v = attn.v(window).view(2, -1, heads, 32)
            q = torch.cat([q[:, :L], independent_rotate(q[:, L:], angles)], 1)
            k = torch.cat([k[:, :L], independent_rotate(k[:, L:], angles)], 1)
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / 32**0.5
            out = attn.o(torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(2, -1, dim))
            text_out[:, i * L : (i + 1) * L] = out[:, :L]
            video_sum[:, 12 * i * P : (12 * i + 13) * P] += out[:, L:]
            video_count[12 * i * P : (12 * i + 13) * P] += 1
        expected = torch.cat([text_out, video_sum / video_count], 1)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_ttt_tables_use_global_positions(reverse):
    n, L, gh, gw = 2, 3, 2, 3
    T = 12 * n + 1
    layout = SequenceLayout(n, L, T, gh, gw)
    P, nT, Nv = gh * gw, n * L, T * gh * gw
    plan = build_ttt_pass_plan(
        layout, reverse=reverse, head_dim=32, theta=10000.0, mini_batch_size=2, rope_dtype=torch.float64
    )
    for k, source in enumerate(plan.token_order.tolist()):
        if source < nT:
            assert plan.rope_cos[k, 0].eq(1).all() and plan.rope_sin[k, 0].eq(0).all()
            assert plan.video_index[k] == -1
            continue
        v = source - nT
        p = Nv - 1 - v if reverse else v  # the reversed pass numbers its flipped video 0 .. Nv-1
        assert plan.video_index[k] == p
        angles = torch.tensor(independent_angles(p // P, (p % P) // gw, p % gw, 32), dtype=torch.float64)
        torch.testing.assert_close(plan.rope_cos[k, 0], angles.cos(), rtol=0, atol=1e-15)
        torch.testing.assert_close(plan.rope_sin[k, 0], angles.sin(), rtol=0, atol=1e-15)


def test_bf16_switch():
    layout = SequenceLayout(1, 4, 13, 4, 6)
    bf16 = build_attention_plan(layout, 32, 10000.0, rope_bf16=True)
    fp32 = build_attention_plan(layout, 32, 10000.0, rope_bf16=False)
    assert bf16.rope_cos.dtype == torch.bfloat16 and fp32.rope_cos.dtype == torch.float32
    x = torch.randn(2, 13 * 24, 2, 32)
    got = apply_rotary(x, bf16.rope_cos, bf16.rope_sin)
    # Reference arithmetic: every product and sum rounded to bf16.
    xb = x.bfloat16().unflatten(-1, (-1, 2))
    c, s = bf16.rope_cos, bf16.rope_sin
    manual = torch.stack([xb[..., 0] * c - xb[..., 1] * s, xb[..., 1] * c + xb[..., 0] * s], -1).flatten(-2)
    assert got.dtype == torch.float32
    assert torch.equal(got, manual.float())
    exact = apply_rotary(x, fp32.rope_cos, fp32.rope_sin)
    error = (got - exact).abs().max().item()
    assert 1e-4 < error < 0.05 * x.abs().max().item()


def test_model_rope_switch_changes_output_slightly():
    torch.manual_seed(0)
    cfg = build_config("tiny", ssm_layer="none", rope_bf16=False)
    model = TTTVideoDiT(cfg, seed=1)
    cfg_bf16 = build_config("tiny", ssm_layer="none", rope_bf16=True)
    model_bf16 = TTTVideoDiT(cfg_bf16, seed=1)
    latents, text, t = torch.randn(1, 13, 16, 8, 12), torch.randn(1, 1, 8, 32), torch.tensor([500.0])
    with torch.no_grad():
        a, b = model(latents, text, t), model_bf16(latents, text, t)
    diff = (a - b).abs().max().item()
    assert 0 < diff < 0.05 * a.abs().max().item()
    assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.999
