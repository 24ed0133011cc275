"""The fused Triton TTT scan against the eager scan (spec 5.3, 5.4), and the kernel selection.

Without CUDA the kernels run in Triton's interpreter (conftest sets TRITON_INTERPRET=1 before anything
imports them); shapes stay tiny because the interpreter is slow. Triton must be installed: these tests
fail, not skip, without it (pip install 'ttt-video[triton]').
"""

from __future__ import annotations

import pytest
import torch
from ttt_helpers import init_so_every_parameter_matters

from ttt_video.kernels import select as kernel_select
from ttt_video.kernels import select_ttt_kernel, triton_import_error, ttt_scan_triton
from ttt_video.models import (
    TTTMLP,
    DiTConfig,
    SequenceLayout,
    TTTLinear,
    build_ttt_pass_plan,
    ttt_linear_step,
    ttt_mlp_step,
    ttt_scan,
)
from ttt_video.models.ttt import TTTSequenceMixer

pytestmark = pytest.mark.usefixtures("single_thread")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|."""
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def test_triton_is_installed():
    assert triton_import_error() is None, (
        f"Triton cannot be imported ({triton_import_error()}): {kernel_select.INSTALL_HINT}"
    )


def scan_problem(mlp, batch=2, heads=3, nm=3, cs=8, dim=16, seed=0):
    """fp32 scan inputs on DEVICE; inner parameters (H, ...) as TTTBase holds them."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(DEVICE)

    hidden = 4 * dim
    params = [
        randn(heads, dim, hidden if mlp else dim, scale=0.3),
        randn(heads, 1, hidden if mlp else dim, scale=0.1),
    ]
    if mlp:
        params += [randn(heads, hidden, dim, scale=0.3), randn(heads, 1, dim, scale=0.1)]
    q, k = (torch.nn.functional.normalize(randn(batch, heads, nm, cs, dim), dim=-1) for _ in range(2))
    targets = randn(batch, heads, nm, cs, dim)
    eta = (torch.rand(batch, heads, nm, cs, generator=g) * 0.5).to(DEVICE)
    ln = [1 + randn(heads, dim, scale=0.2), randn(heads, dim, scale=0.2)]
    return params, [q, k, targets, eta, *ln]


def tiled(params, batch):
    return tuple(p.expand(batch, *p.shape) for p in params)


def eager(mlp, params, inputs, **kwargs):
    q, k, *rest = inputs
    step = ttt_mlp_step if mlp else ttt_linear_step
    return ttt_scan(step, tiled(params, q.shape[0]), q.float(), k.float(), *rest, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cs", [4, 8, 16])
@pytest.mark.parametrize("mlp", [False, True])
def test_kernel_matches_eager_scan(mlp, cs, dtype):
    params, inputs = scan_problem(mlp, cs=cs)
    q, k = (t.to(dtype) for t in inputs[:2])  # the matmul operands in the input dtype
    inputs = [q, k, *inputs[2:]]
    with torch.no_grad():
        got = ttt_scan_triton(tiled(params, 2), *inputs)
        want = eager(mlp, params, inputs)  # fp32 arithmetic on the same (rounded) q and k
    assert got.dtype == dtype and got.shape == want.shape
    assert relative_error(got, want) < TOLERANCE[dtype]
    # The state really moves: without the updates the output would differ clearly.
    frozen = eager(mlp, params, [*inputs[:3], torch.zeros_like(inputs[3]), *inputs[4:]])
    assert relative_error(frozen, want) > 10 * TOLERANCE[dtype]


@pytest.mark.parametrize("mlp", [False, True])
def test_kernel_pads_odd_sizes_and_reads_strided_inputs(mlp):
    """cs = 12 and d = 24 (padded to 16 and 32 inside), inputs in the eager scan's mini-batch-major layout."""
    params, inputs = scan_problem(mlp, batch=1, heads=2, nm=2, cs=12, dim=24, seed=1)
    strided = [t.movedim(2, 0).contiguous().movedim(0, 2) for t in inputs[:4]] + inputs[4:]
    assert not strided[0].is_contiguous()
    with torch.no_grad():
        got = ttt_scan_triton(tiled(params, 1), *strided)
        want = eager(mlp, params, inputs)
    assert got.stride() == strided[0].stride()
    assert relative_error(got, want) < 1e-5


def test_kernel_uses_the_given_inner_ln_eps():
    params, inputs = scan_problem(False, seed=2)
    inputs[1] = inputs[1] * 0.05  # small keys: the pre-LN variance is comparable to eps
    with torch.no_grad():
        got = ttt_scan_triton(tiled(params, 2), *inputs, eps=1e-2)
        want = eager(False, params, inputs, eps=1e-2)
        default = eager(False, params, inputs)
    assert relative_error(got, want) < 1e-5
    assert relative_error(default, want) > 1e-3


@pytest.mark.parametrize("mlp", [False, True])
def test_kernel_backward_matches_autograd_of_the_eager_scan(mlp):
    params, inputs = scan_problem(mlp, batch=2, heads=2, nm=5, cs=8, seed=3)
    leaves = [t.requires_grad_() for t in params + inputs]
    upstream = torch.randn(inputs[0].shape, device=DEVICE)
    want = eager(mlp, params, inputs)
    want_grads = torch.autograd.grad(want, leaves, upstream)
    for group in (None, 2):
        got = ttt_scan_triton(tiled(params, 2), *inputs, checkpoint_group_size=group)
        grads = torch.autograd.grad(got, leaves, upstream)
        assert relative_error(got, want) < 1e-5
        for got_grad, want_grad in zip(grads, want_grads, strict=True):
            assert relative_error(got_grad, want_grad) < 1e-4


# ------------------------------------------------------------------------------------------------
# through TTTBase.forward, both directions, against the eager path
# ------------------------------------------------------------------------------------------------


def ttt_layer(mlp: bool, dtype: torch.dtype):
    torch.manual_seed(0)
    cls = TTTMLP if mlp else TTTLinear
    ttt = cls(32, 2, mini_batch_size=12, base_lr=1.0)
    init_so_every_parameter_matters(ttt)
    return ttt.to(DEVICE, dtype)


def plans(layout, cs):
    return [
        build_ttt_pass_plan(layout, reverse=r, head_dim=16, theta=1e4, mini_batch_size=cs, device=DEVICE)
        for r in (False, True)
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mlp", [False, True])
def test_ttt_layer_triton_equals_eager_in_both_directions(mlp, dtype):
    layout = SequenceLayout(2, 3, 25, 2, 3)  # 6 + 25 * 6 = 156 tokens = 13 mini-batches of 12
    ttt = ttt_layer(mlp, dtype)
    mixer = TTTSequenceMixer(ttt)
    x = torch.randn(2, layout.num_tokens, 32, device=DEVICE).to(dtype)
    for plan in plans(layout, 12):
        with torch.no_grad():
            ttt.kernel = "eager"
            want = mixer(x, plan)
            ttt.kernel = "triton"
            got = mixer(x, plan)
        assert relative_error(got, want) < TOLERANCE[dtype]


@pytest.mark.parametrize("mlp", [False, True])
def test_ttt_layer_training_with_triton_matches_eager(mlp):
    layout = SequenceLayout(1, 4, 13, 2, 2)  # 4 + 13 * 4 = 56 tokens = 7 mini-batches of 8
    ttt = ttt_layer(mlp, torch.float32)
    ttt.mini_batch_size = 8
    ttt.scan_checkpoint_group_size = 3
    x = torch.randn(1, layout.num_tokens, 32, device=DEVICE)
    plan = plans(layout, 8)[1]
    results = {}
    for kernel in ("eager", "triton"):
        ttt.kernel = kernel
        ttt.zero_grad()
        out = ttt(x[:, plan.token_order], plan)
        out.square().sum().backward()
        results[kernel] = (out.detach(), {n: p.grad.clone() for n, p in ttt.named_parameters()})
    assert relative_error(results["triton"][0], results["eager"][0]) < 1e-5
    for name, want in results["eager"][1].items():
        assert relative_error(results["triton"][1][name], want) < 1e-4, name


# ------------------------------------------------------------------------------------------------
# selection and errors
# ------------------------------------------------------------------------------------------------


def test_kernel_selection():
    cpu = torch.device("cpu")
    assert select_ttt_kernel("auto", cpu, torch.float32) == "eager"
    assert select_ttt_kernel("eager", cpu, torch.float32) == "eager"
    assert select_ttt_kernel("triton", DEVICE, torch.bfloat16) == "triton"  # CPU: the interpreter
    with pytest.raises(ValueError, match="ttt_kernel must be one of"):
        select_ttt_kernel("fast", cpu, torch.float32)
    with pytest.raises(ValueError, match="use ttt_kernel='eager'"):
        select_ttt_kernel("triton", DEVICE, torch.float64)
    with pytest.raises(ValueError, match="DiTConfig.ttt_kernel must be one of"):
        DiTConfig(model_dim=64, num_heads=2, num_layers=1, text_dim=8, time_embed_dim=8, ttt_kernel="cuda")
    assert (
        DiTConfig(model_dim=64, num_heads=2, num_layers=1, text_dim=8, time_embed_dim=8).ttt_kernel == "auto"
    )
    with pytest.raises(ValueError, match="TTTLinear: kernel must be one of"):
        TTTLinear(32, 2, mini_batch_size=4, base_lr=1.0, kernel="cuda")


def test_missing_triton_says_how_to_install(monkeypatch):
    monkeypatch.setattr(kernel_select, "triton_import_error", lambda: "No module named 'triton'")
    for call in (
        lambda: select_ttt_kernel("triton", DEVICE, torch.float32),
        lambda: ttt_scan_triton(*scan_problem(False)[1]),
    ):
        with pytest.raises(RuntimeError, match=r"pip install 'ttt-video\[triton\]'"):
            call()
    assert select_ttt_kernel("auto", torch.device("cuda"), torch.float32) == "eager"


def test_kernel_rejects_float64_and_mismatched_shapes():
    params, inputs = scan_problem(False)
    with pytest.raises(ValueError, match="float64"):
        ttt_scan_triton(tiled(params, 2), inputs[0].double(), inputs[1].double(), *inputs[2:])
    with pytest.raises(ValueError, match="keys"):
        ttt_scan_triton(tiled(params, 2), inputs[0], inputs[1][:, :, :2], *inputs[2:])
    with pytest.raises(ValueError, match="eta must be"):
        ttt_scan_triton(tiled(params, 2), *inputs[:3], inputs[3][..., :2], *inputs[4:])
