"""The eager TTT scan: checkpoint groups (spec 5.6), its gradients, and one trace under torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from torch.profiler import ProfilerActivity, profile

from ttt_video.models import ttt_linear_step, ttt_mlp_step, ttt_scan
from ttt_video.models.ttt_scan import scan_group_size

pytestmark = pytest.mark.usefixtures("single_thread")


def scan_problem(mlp: bool, batch=2, heads=2, nm=7, cs=4, dim=8, dtype=torch.float64, seed=0):
    """Random scan inputs; the inner parameters are (H, ...) and tiled over the batch as TTTBase does."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    hidden = 4 * dim
    params = [randn(heads, dim, hidden if mlp else dim, scale=0.3), randn(heads, 1, hidden if mlp else dim)]
    if mlp:
        params += [randn(heads, hidden, dim, scale=0.3), randn(heads, 1, dim)]
    q, k, y = (randn(batch, heads, nm, cs, dim) for _ in range(3))
    eta = (torch.rand(batch, heads, nm, cs, generator=g, dtype=torch.float64) * 0.2).to(dtype)
    gamma, beta = 1 + randn(heads, dim, scale=0.2), randn(heads, dim, scale=0.2)
    return params, [q, k, y, eta, gamma, beta]


def run_scan(mlp, params, inputs, **kwargs):
    batch = inputs[0].shape[0]
    state = tuple(p.expand(batch, *p.shape) for p in params)
    return ttt_scan(ttt_mlp_step if mlp else ttt_linear_step, state, *inputs, **kwargs)


def test_group_size_is_clamped():
    assert scan_group_size(None, 5) is None
    assert [scan_group_size(g, 5) for g in (-3, 0, 1, 2, 5, 9, 10**6)] == [1, 1, 1, 2, 5, 5, 5]


@pytest.mark.parametrize("mlp", [False, True])
def test_checkpointed_scan_has_the_same_outputs_and_gradients(mlp):
    params, inputs = scan_problem(mlp)
    leaves = [t.requires_grad_() for t in params + inputs]
    upstream = torch.randn(inputs[0].shape, dtype=torch.float64)
    plain = run_scan(mlp, params, inputs)
    plain_grads = torch.autograd.grad(plain, leaves, upstream)
    for group in (1, 2, 3, 7, 100):
        out = run_scan(mlp, params, inputs, checkpoint_group_size=group)
        grads = torch.autograd.grad(out, leaves, upstream)
        torch.testing.assert_close(out, plain, rtol=1e-12, atol=1e-14)
        for got, want in zip(grads, plain_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert all(g.abs().max() > 0 for g in plain_grads)


def retained_bytes(fn) -> int:
    """Bytes allocated while ``fn`` runs and still alive after it (its result and what autograd keeps for
    backward), from the profiler's allocation records."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    return sum(event.self_cpu_memory_usage for event in prof.events())


@pytest.mark.parametrize("mlp", [False, True])
def test_checkpointing_keeps_less_for_backward(mlp):
    params, inputs = scan_problem(mlp, nm=16, cs=16, dtype=torch.float32)
    for t in params + inputs:
        t.requires_grad_()
    plain = retained_bytes(lambda: run_scan(mlp, params, inputs))
    grouped = {
        g: retained_bytes(lambda g=g: run_scan(mlp, params, inputs, checkpoint_group_size=g))
        for g in (1, 4, 16)
    }
    state_bytes = sum(p.numel() * 4 * inputs[0].shape[0] for p in params)
    # Without remat every step's intermediates are kept; with it the group-start states, the inputs and
    # the output.
    assert grouped[16] < grouped[4] < grouped[1] < plain
    assert plain > 2 * grouped[4]
    assert grouped[1] - grouped[16] >= 15 * state_bytes


def scan_gradcheck_function(mlp: bool, batch: int):
    step = ttt_mlp_step if mlp else ttt_linear_step

    def scan(q, k, y, eta, gamma, beta, *params):
        state = tuple(p.expand(batch, *p.shape) for p in params)
        return ttt_scan(step, state, q, k, y, eta, gamma, beta, 1e-6, checkpoint_group_size=1)

    return scan


@pytest.mark.parametrize("mlp", [False, True])
def test_scan_gradients_match_finite_differences(mlp):
    """The fused ATen LayerNorm / GELU backward ops in the steps are differentiated correctly."""
    params, inputs = scan_problem(mlp, batch=1, heads=1, nm=2, cs=3, dim=4, seed=3)
    args = [t.requires_grad_() for t in inputs + params]
    assert torch.autograd.gradcheck(scan_gradcheck_function(mlp, 1), args, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mlp", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_compiled_step_is_traced_once(mlp, batch):
    """The first state comes from (expanded) parameters, later ones from fresh tensors: one trace."""
    params, inputs = scan_problem(mlp, batch=batch, dtype=torch.float32)
    counter = CompileCounter()
    step = torch.compile(ttt_mlp_step if mlp else ttt_linear_step, backend=counter, dynamic=False)
    params = [torch.nn.Parameter(p) for p in params]
    with torch.inference_mode():
        state = tuple(p.expand(batch, *p.shape) for p in params)
        out = ttt_scan(step, state, *inputs)
    torch.testing.assert_close(out, run_scan(mlp, [p.detach() for p in params], inputs), rtol=1e-5, atol=1e-6)
    assert counter.frame_count == 1
