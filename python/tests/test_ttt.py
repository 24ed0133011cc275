"""TTT layers: closed-form inner updates, the scan, interleave maps and the learning-rate quirk (spec 5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ttt_helpers import init_so_every_parameter_matters

from ttt_video.models import (
    TTTMLP,
    SequenceLayout,
    TTTLinear,
    build_ttt_pass_plan,
    interleave_permutation,
    reverse_token_order,
    segment_chunk_frames,
    ttt_linear_step,
    ttt_lr_source_index,
    ttt_mlp_step,
    ttt_scan,
)
from ttt_video.models.ttt import TTTSequenceMixer
from ttt_video.models.ttt_scan import gelu_tanh_derivative

EPS = 1e-6


pytestmark = pytest.mark.usefixtures("single_thread")


# ------------------------------------------------------------------------------------------------
# independent pieces written with autograd
# ------------------------------------------------------------------------------------------------


def inner_ln(z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(z, z.shape[-1:], eps=EPS) * gamma + beta


def inner_forward(params: list[torch.Tensor], x: torch.Tensor, mlp: bool) -> torch.Tensor:
    if mlp:
        w1, b1, w2, b2 = params
        return F.gelu(x @ w1 + b1, approximate="tanh") @ w2 + b2
    w1, b1 = params
    return x @ w1 + b1


def naive_mini_batch(params, q, k, y, eta, gamma, beta, mlp):
    """One mini-batch with autograd: W' = W - grad(sum_j eta_j * 1/2 ||LN(f(K_j)) - Y_j||^2)."""
    with torch.enable_grad():
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        residual = inner_ln(inner_forward(leaves, k, mlp), gamma, beta) - y
        loss = (eta.unsqueeze(-1) * 0.5 * residual.pow(2)).sum()
        grads = torch.autograd.grad(loss, leaves)
    updated = [p.detach() - g for p, g in zip(leaves, grads, strict=True)]
    out = q + inner_ln(inner_forward(updated, q, mlp), gamma, beta)
    return updated, out


def random_inner_problem(mlp: bool, batch=2, heads=3, nm=4, cs=5, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    hidden = 4 * dim
    params = [
        randn(batch, heads, dim, hidden if mlp else dim, scale=0.3),
        randn(batch, heads, 1, hidden if mlp else dim),
    ]
    if mlp:
        params += [randn(batch, heads, hidden, dim, scale=0.3), randn(batch, heads, 1, dim)]
    q, k, y = (randn(batch, heads, nm, cs, dim) for _ in range(3))
    eta = torch.rand(batch, heads, nm, cs, generator=g, dtype=torch.float64) * 0.1
    gamma = 1 + randn(heads, dim, scale=0.2)
    beta = randn(heads, dim, scale=0.2)
    return params, q, k, y, eta, gamma, beta


@pytest.mark.parametrize("mlp", [False, True])
def test_closed_form_step_equals_autograd(mlp):
    params, q, k, y, eta, gamma, beta = random_inner_problem(mlp)
    step = ttt_mlp_step if mlp else ttt_linear_step
    g4, b4 = gamma[None, :, None], beta[None, :, None]
    batch, heads = q.shape[:2]

    def rows(t):  # the steps take (B*H, ...) batches
        return t.expand(batch, heads, *t.shape[2:]).reshape(batch * heads, *t.shape[2:])

    state, out = step(
        tuple(rows(p) for p in params),
        *(rows(t[:, :, 0]) for t in (q, k, y, eta)),
        rows(g4),
        rows(b4),
        EPS,
    )
    expected_state, expected_out = naive_mini_batch(
        params, q[:, :, 0], k[:, :, 0], y[:, :, 0], eta[:, :, 0], g4, b4, mlp
    )
    for got, want in zip(state, expected_state, strict=True):
        torch.testing.assert_close(got, rows(want), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, rows(expected_out), rtol=1e-10, atol=1e-12)
    # The update is not trivially zero.
    assert (state[0] - rows(params[0])).abs().max() > 1e-4


@pytest.mark.parametrize("mlp", [False, True])
def test_scan_equals_naive_loop(mlp):
    params, q, k, y, eta, gamma, beta = random_inner_problem(mlp, nm=5, seed=1)
    out = ttt_scan(ttt_mlp_step if mlp else ttt_linear_step, tuple(params), q, k, y, eta, gamma, beta, EPS)
    state = params
    g4, b4 = gamma[None, :, None], beta[None, :, None]
    for m in range(q.shape[2]):
        state, expected = naive_mini_batch(
            state, q[:, :, m], k[:, :, m], y[:, :, m], eta[:, :, m], g4, b4, mlp
        )
        torch.testing.assert_close(out[:, :, m], expected, rtol=1e-10, atol=1e-12)


def test_gelu_tanh_derivative():
    x = torch.linspace(-6, 6, 301, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(F.gelu(x, approximate="tanh").sum(), x)
    torch.testing.assert_close(gelu_tanh_derivative(x.detach()), grad, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# interleave (spec 5.1a) and the learning-rate misalignment (spec 5.2)
# ------------------------------------------------------------------------------------------------


def spec_interleave(n: int, L: int, P: int, T: int) -> list[int]:
    """pi(k) of spec 5.1a, written out literally."""
    V0, Vb = 13 * P, 12 * P
    I0, Ib = L + V0, L + Vb
    N = n * L + T * P
    result = []
    for k in range(N):
        c = 0 if k < I0 else 1 + (k - I0) // Ib
        o = k if c == 0 else (k - I0) % Ib
        if o < L:
            result.append(c * L + o)
        else:
            v = o - L if c == 0 else V0 + (c - 1) * Vb + (o - L)
            result.append(n * L + v)
    return result


@pytest.mark.parametrize(("n", "L", "P"), [(1, 7, 6), (2, 5, 6), (3, 8, 24), (4, 3, 2)])
def test_interleave_matches_spec_formula_and_inverts(n, L, P):
    T = 12 * n + 1
    perm = interleave_permutation(n, L, P, T)
    if n > 1:
        assert perm.tolist() == spec_interleave(n, L, P, T)
    else:
        assert perm.tolist() == list(range(n * L + T * P))
    x = torch.randn(1, perm.numel(), 2)
    inverse = perm.argsort()
    assert torch.equal(x[:, perm][:, inverse], x)
    assert torch.equal(x[:, inverse][:, perm], x)


def test_segment_chunk_frames():
    assert segment_chunk_frames(1, 13) == [13]
    assert segment_chunk_frames(3, 37) == [13, 12, 12]
    assert segment_chunk_frames(21, 253) == [13] + [12] * 20


def simulate_reference_eta(lr: torch.Tensor, perm: torch.Tensor, cs: int) -> torch.Tensor:
    """Reference reshapes: eta (B,H,NM,cs,cs) in source order, rows permuted by the interleave, last row."""
    batch, heads, length = lr.shape
    nm = length // cs
    eta = (lr / cs).view(batch, heads, nm, 1, cs).expand(batch, heads, nm, cs, cs)
    rows = eta.reshape(batch, heads, length, cs)[:, :, perm]
    return rows.reshape(batch, heads, nm, cs, cs)[:, :, :, cs - 1, :]


@pytest.mark.parametrize(
    ("n", "L", "P", "cs"), [(3, 8, 24, 16), (3, 24, 24, 64), (2, 5, 6, 8), (1, 8, 24, 16)]
)
def test_lr_misalignment_matches_reference_reshapes(n, L, P, cs):
    T = 12 * n + 1
    N = n * L + T * P
    assert N % cs == 0
    perm = interleave_permutation(n, L, P, T)
    lr = torch.rand(2, 3, N, dtype=torch.float64)
    expected = simulate_reference_eta(lr, perm, cs)

    source_index = ttt_lr_source_index(perm, cs, "reference")
    torch.testing.assert_close((lr[:, :, source_index] / cs).view_as(expected), expected, rtol=0, atol=0)

    # The plan's lr_index applies the same map to learning rates computed in scan order.
    layout = SequenceLayout(n, L, T, 2, P // 2)
    plan = build_ttt_pass_plan(layout, reverse=False, head_dim=32, theta=1e4, mini_batch_size=cs)
    lr_scan = lr[:, :, plan.token_order]
    torch.testing.assert_close(
        (lr_scan[:, :, plan.lr_index] / cs).view_as(expected), expected, rtol=0, atol=0
    )

    aligned = build_ttt_pass_plan(
        layout, reverse=False, head_dim=32, theta=1e4, mini_batch_size=cs, lr_alignment="aligned"
    )
    assert aligned.lr_index is None
    if n == 1:
        assert torch.equal(plan.lr_index, torch.arange(N))
    else:
        # The quirk is real: a large share of keys use another token's learning rate.
        assert (plan.lr_index != torch.arange(N)).float().mean() > 0.3


def test_reverse_pass_pairing():
    n, L, P = 3, 4, 6
    T = 12 * n + 1
    layout = SequenceLayout(n, L, T, 2, 3)
    num_text = n * L

    def paired_frames(plan, chunk_frames):
        """Original frame indices read right after each prompt in the scan order."""
        order = plan.token_order.tolist()
        pairs, k = [], 0
        for frames in chunk_frames:
            text = order[k : k + L]
            video = order[k + L : k + L + frames * P]
            pairs.append((text[0] // L, sorted({(v - num_text) // P for v in video})))
            k += L + frames * P
        return pairs

    def build(reverse, pairing):
        return build_ttt_pass_plan(
            layout, reverse=reverse, head_dim=32, theta=1e4, mini_batch_size=2, reverse_pairing=pairing
        )

    assert paired_frames(build(False, "reference"), [13, 12, 12]) == [
        (0, list(range(0, 13))),
        (1, list(range(13, 25))),
        (2, list(range(25, 37))),
    ]
    # Reference: text_{n-1} with frames T-13..T-1, every pairing shifted by one frame (spec 5.7).
    assert paired_frames(build(True, "reference"), [13, 12, 12]) == [
        (2, list(range(24, 37))),
        (1, list(range(12, 24))),
        (0, list(range(0, 12))),
    ]
    # Aligned: exactly the forward chunks, in reverse order.
    assert paired_frames(build(True, "aligned"), [12, 12, 13]) == [
        (2, list(range(25, 37))),
        (1, list(range(13, 25))),
        (0, list(range(0, 13))),
    ]
    # Video tokens of the reverse pass are fully flipped (t, h and w).
    plan = build(True, "reference")
    assert plan.token_order[L : L + P].tolist() == list(
        range(num_text + T * P - 1, num_text + T * P - 1 - P, -1)
    )


def test_reverse_token_order_is_an_involution():
    layout = SequenceLayout(3, 4, 37, 2, 3)
    r = reverse_token_order(layout)
    assert torch.equal(r[r], torch.arange(layout.num_tokens))
    assert r[:4].tolist() == [8, 9, 10, 11]


# ------------------------------------------------------------------------------------------------
# the whole TTT layer against an independent float64 implementation of spec 5.1 - 5.3
# ------------------------------------------------------------------------------------------------


def independent_rope(x: torch.Tensor, t: int, h: int, w: int, theta: float = 1e4) -> torch.Tensor:
    """Rotate one head vector by the 3-D RoPE of spec 4.4 (complex multiplication of adjacent pairs)."""
    d = x.shape[-1]
    dt, dh = d // 4, 3 * d // 8
    angles = []
    for m in range(d // 2):
        if m < dt // 2:
            angles.append(t * theta ** (-2 * m / dt))
        elif m < dt // 2 + dh // 2:
            angles.append(h * theta ** (-2 * (m - dt // 2) / dh))
        else:
            angles.append(w * theta ** (-2 * (m - dt // 2 - dh // 2) / dh))
    rot = torch.polar(torch.ones(d // 2, dtype=torch.float64), torch.tensor(angles, dtype=torch.float64))
    return torch.view_as_real(torch.view_as_complex(x.reshape(-1, d // 2, 2).contiguous()) * rot).reshape(
        x.shape
    )


def independent_ttt_pass(ttt, x, layout, perm, mlp):
    """Spec 5.1 - 5.3 in source order of the pass, step by step, with autograd for the inner updates."""
    B, N, D = x.shape
    H, d, cs = ttt.num_heads, ttt.head_dim, ttt.mini_batch_size
    nT, P, W = layout.num_text_tokens, layout.tokens_per_frame, layout.grid_width
    q = F.normalize(ttt.wq(x).view(B, N, H, d), dim=-1, eps=1e-12)
    k = F.normalize(ttt.wk(x).view(B, N, H, d), dim=-1, eps=1e-12)
    v = ttt.wv(x).view(B, N, H, d)
    q, k = q.clone(), k.clone()
    for p in range(N - nT):
        t, h, w = p // P, (p % P) // W, p % W
        q[:, nT + p] = independent_rope(q[:, nT + p], t, h, w)
        k[:, nT + p] = independent_rope(k[:, nT + p], t, h, w)
    dv = v - k
    dv_hat = (dv - dv.mean(-1, keepdim=True)) / (dv.std(-1, unbiased=True, keepdim=True) + 1e-8)
    v = k + ttt.ttt_norm_weight * dv_hat + ttt.ttt_norm_bias
    lr = (
        ttt.base_lr
        * torch.sigmoid(
            torch.einsum("bnc,hc->bhn", x, ttt.learnable_ttt_lr_weight[:, 0]) + ttt.learnable_ttt_lr_bias
        )
        / d
    )
    eta = simulate_reference_eta(lr, perm, cs)  # (B, H, NM, cs)

    def heads_first(t):
        return t[:, perm].permute(0, 2, 1, 3)  # interleaved, (B, H, N, d)

    qi, ki, vi = heads_first(q), heads_first(k), heads_first(v)
    params = [p.expand(B, *p.shape) for p in (ttt.W1, ttt.b1) + ((ttt.W2, ttt.b2) if mlp else ())]
    gamma, beta = ttt.ttt_norm_weight[None, :, None], ttt.ttt_norm_bias[None, :, None]
    outs = []
    for m in range(N // cs):
        sl = slice(m * cs, (m + 1) * cs)
        params, o = naive_mini_batch(
            params, qi[:, :, sl], ki[:, :, sl], vi[:, :, sl] - ki[:, :, sl], eta[:, :, m], gamma, beta, mlp
        )
        outs.append(o)
    out = torch.cat(outs, dim=2).permute(0, 2, 1, 3).reshape(B, N, D)
    out = ttt.wo(ttt.post_norm(out))
    return out[:, perm.argsort()]


@pytest.mark.parametrize("mlp", [False, True])
@pytest.mark.parametrize("pairing", ["reference", "aligned"])
def test_ttt_layer_equals_independent_implementation(mlp, pairing):
    torch.manual_seed(0)
    n, L, gh, gw, cs = 2, 3, 2, 3, 12
    T = 12 * n + 1
    layout = SequenceLayout(n, L, T, gh, gw)
    N = layout.num_tokens  # 6 + 25*6 = 156 = 13 mini-batches
    assert N % cs == 0
    dim, heads = 64, 2
    cls = TTTMLP if mlp else TTTLinear
    ttt = cls(dim, heads, mini_batch_size=cs, base_lr=1.0).double()
    init_so_every_parameter_matters(ttt)
    with torch.no_grad():
        ttt.post_norm.weight.uniform_(0.5, 1.5)
    mixer = TTTSequenceMixer(ttt)
    x = torch.randn(2, N, dim, dtype=torch.float64)

    for reverse in (False, True):
        plan = build_ttt_pass_plan(
            layout,
            reverse=reverse,
            head_dim=32,
            theta=1e4,
            mini_batch_size=cs,
            reverse_pairing=pairing,
            rope_dtype=torch.float64,
        )
        chunks = segment_chunk_frames(n, T)
        if reverse and pairing == "aligned":
            chunks = chunks[::-1]
        perm = interleave_permutation(n, L, gh * gw, T, chunks)
        with torch.no_grad():
            got = mixer(x, plan)
            if reverse:
                r = reverse_token_order(layout)
                expected = independent_ttt_pass(ttt, x[:, r], layout, perm, mlp)[:, r]
            else:
                expected = independent_ttt_pass(ttt, x, layout, perm, mlp)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_rejects_bad_mini_batch():
    layout = SequenceLayout(1, 3, 13, 2, 3)  # 81 tokens
    with pytest.raises(ValueError, match="multiple of mini_batch_size 16"):
        build_ttt_pass_plan(layout, reverse=False, head_dim=32, theta=1e4, mini_batch_size=16)
    ttt = TTTLinear(64, 2, mini_batch_size=16, base_lr=1.0)
    plan = build_ttt_pass_plan(layout, reverse=False, head_dim=32, theta=1e4, mini_batch_size=1)
    with pytest.raises(ValueError, match="multiple of mini_batch_size 16"):
        ttt(torch.randn(1, 81, 64), plan)
