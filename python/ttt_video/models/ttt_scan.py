"""The TTT inner model (spec 5.3): closed-form gradients, one mini-batch step, and the eager scan.

Steps work on 3-D batches: every tensor has one leading dimension ``BH`` (batch x heads, flattened), so the
affine maps are single ``baddbmm`` calls. ``ttt_scan`` flattens ``(B, H)`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

State = tuple[torch.Tensor, ...]
StepFn = Callable[..., tuple[State, torch.Tensor]]

_aten = torch.ops.aten


def layer_norm(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last dim with per-row ``weight``/``bias`` broadcast against ``z``."""
    return torch.addcmul(bias, F.layer_norm(z, z.shape[-1:], eps=eps), weight)


def layer_norm_l2_grad(
    z: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """d/dz of ``1/2 || LN(z) - target ||^2`` per row (spec 5.3), ``LN`` with biased variance and ``eps``.

    The closed form ``(D*ghat - sum(ghat) - zhat * sum(ghat*zhat)) / (D*sigma)`` with
    ``ghat = (LN(z) - target) * weight`` is exactly LayerNorm's input gradient for the upstream gradient
    ``ghat``, so it is computed by ATen's fused LayerNorm forward/backward pair (two kernels instead of a
    dozen; differentiable again for training).
    """
    dim = z.shape[-1]
    z_hat, mean, rstd = torch.native_layer_norm(z, [dim], None, None, eps)
    grad_hat = (torch.addcmul(bias, z_hat, weight) - target) * weight
    return _aten.native_layer_norm_backward(grad_hat, z, [dim], mean, rstd, None, None, [True, False, False])[
        0
    ]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def gelu_tanh_derivative(x: torch.Tensor) -> torch.Tensor:
    """``gelu'(x)`` of spec 5.3 written out (the scan uses ATen's fused ``gelu_backward`` instead)."""
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))
    tanh_u = torch.tanh(u)
    return 0.5 * (1.0 + tanh_u) + 0.5 * x * (1.0 - tanh_u.pow(2)) * (
        math.sqrt(2.0 / math.pi) + 3 * 0.044715 * math.sqrt(2.0 / math.pi) * x.pow(2)
    )


def ttt_linear_step(
    state: State,
    q: torch.Tensor,
    k: torch.Tensor,
    target: torch.Tensor,
    eta: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> tuple[State, torch.Tensor]:
    """One mini-batch of TTT-Linear, ``f(x) = x W1 + b1``.

    ``q, k, target (BH, cs, d)``, ``eta (BH, cs)``, state ``W1 (BH, d, d)``, ``b1 (BH, 1, d)``,
    ``ln_weight/ln_bias (BH, 1, d)``. Returns the updated state and the output ``(BH, cs, d)``.
    """
    w1, b1 = state
    grad = layer_norm_l2_grad(torch.baddbmm(b1, k, w1), target, ln_weight, ln_bias, eps)
    eta_grad = eta.unsqueeze(-1) * grad  # (eta ⊙ K)^T G = K^T (eta ⊙ G)
    w1 = torch.baddbmm(w1, k.transpose(-1, -2), eta_grad, alpha=-1)
    b1 = b1 - eta_grad.sum(-2, keepdim=True)
    out = q + layer_norm(torch.baddbmm(b1, q, w1), ln_weight, ln_bias, eps)
    return (w1, b1), out


def ttt_mlp_step(
    state: State,
    q: torch.Tensor,
    k: torch.Tensor,
    target: torch.Tensor,
    eta: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> tuple[State, torch.Tensor]:
    """One mini-batch of TTT-MLP, ``f(x) = gelu_tanh(x W1 + b1) W2 + b2``; shapes as ``ttt_linear_step``
    with ``W1 (BH, d, h)``, ``b1 (BH, 1, h)``, ``W2 (BH, h, d)``, ``b2 (BH, 1, d)``."""
    w1, b1, w2, b2 = state
    z1 = torch.baddbmm(b1, k, w1)
    x2 = gelu_tanh(z1)
    grad2 = layer_norm_l2_grad(torch.baddbmm(b2, x2, w2), target, ln_weight, ln_bias, eps)
    # G1 = (G2 W2^T) ⊙ gelu'(Z1) with the old W2, in one fused kernel.
    grad1 = _aten.gelu_backward(grad2 @ w2.transpose(-1, -2), z1, approximate="tanh")
    eta_grad2 = eta.unsqueeze(-1) * grad2  # scale the narrow (cs, d) side, not the (cs, h) one
    w2 = torch.baddbmm(w2, x2.transpose(-1, -2), eta_grad2, alpha=-1)
    b2 = b2 - eta_grad2.sum(-2, keepdim=True)
    w1 = torch.baddbmm(w1, (eta.unsqueeze(-1) * k).transpose(-1, -2), grad1, alpha=-1)
    b1 = torch.baddbmm(b1, eta.unsqueeze(-2), grad1, alpha=-1)  # b1 - sum_j eta_j G1_j
    hidden = gelu_tanh(torch.baddbmm(b1, q, w1))
    out = q + layer_norm(torch.baddbmm(b2, hidden, w2), ln_weight, ln_bias, eps)
    return (w1, b1, w2, b2), out


def scan_group_size(checkpoint_group_size: int | None, num_mini_batches: int) -> int | None:
    """``min(max(G, 1), NM)`` (spec 5.6); None = no checkpointing."""
    if checkpoint_group_size is None:
        return None
    return min(max(int(checkpoint_group_size), 1), num_mini_batches)


def check_scan_shapes(
    initial_state: State, queries: torch.Tensor, eta: torch.Tensor, ln_weight: torch.Tensor
) -> None:
    """Raise a ValueError naming the argument whose shape does not fit ``queries (B, H, NM, cs, d)``."""
    if queries.dim() != 5:
        raise ValueError(f"ttt_scan: queries must be (B, H, NM, cs, d), got shape {tuple(queries.shape)}")
    batch, heads, num_mb, cs, dim = queries.shape
    if tuple(eta.shape) != (batch, heads, num_mb, cs):
        raise ValueError(
            f"ttt_scan: eta must be (B, H, NM, cs) = {(batch, heads, num_mb, cs)}, got {tuple(eta.shape)}"
        )
    if tuple(ln_weight.shape) != (heads, dim):
        raise ValueError(
            f"ttt_scan: ln_weight/ln_bias must be (H, d) = {(heads, dim)}, got {tuple(ln_weight.shape)}"
        )
    for t in initial_state:
        if tuple(t.shape[:2]) != (batch, heads):
            raise ValueError(
                f"ttt_scan: state tensors must start with (B, H) = {(batch, heads)}, got {tuple(t.shape)}"
            )


def to_mini_batch_major(t: torch.Tensor) -> torch.Tensor:
    """``(B, H, NM, ...) -> (NM, B*H, ...)``, contiguous (no copy if already laid out so)."""
    batch, heads, num_mb = t.shape[:3]
    return t.movedim(2, 0).reshape(num_mb, batch * heads, *t.shape[3:]).contiguous()


def per_row(parameter: torch.Tensor, batch: int) -> torch.Tensor:
    """A per-head ``(H, d)`` LayerNorm parameter as ``(B*H, 1, d)`` rows for the 3-D steps."""
    heads, dim = parameter.shape
    return parameter[None, :, None, :].expand(batch, heads, 1, dim).reshape(batch * heads, 1, dim)


def run_mini_batches(step: StepFn, state: State, inputs, start: int, stop: int, eps: float):
    """Steps ``start .. stop-1`` from ``state``; ``inputs`` are the mini-batch-major ``(NM, BH, ...)``
    queries, keys, targets and eta and the ``(BH, 1, d)`` LN weight and bias.
    Returns ``(*final_state, outputs (stop - start, BH, cs, d))``."""
    queries, keys, targets, eta, ln_weight, ln_bias = inputs
    outputs = []
    for m in range(start, stop):
        state, out = step(state, queries[m], keys[m], targets[m], eta[m], ln_weight, ln_bias, eps)
        outputs.append(out)
    return (*state, torch.stack(outputs))


def ttt_scan(
    step: StepFn,
    initial_state: State,
    queries: torch.Tensor,
    keys: torch.Tensor,
    targets: torch.Tensor,
    eta: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float = 1e-6,
    checkpoint_group_size: int | None = None,
) -> torch.Tensor:
    """Run ``step`` over the mini-batches, carrying the inner weights.

    ``queries/keys/targets (B, H, NM, cs, d)``, ``eta (B, H, NM, cs)`` (per-key learning rates),
    ``initial_state`` tensors ``(B, H, ...)``, ``ln_weight/ln_bias (H, d)``. Every token of a mini-batch
    reads the weights after that mini-batch's update. Returns ``(B, H, NM, cs, d)``.

    ``checkpoint_group_size`` G (spec 5.6, training): when autograd records, groups of
    ``min(max(G, 1), NM)`` mini-batches run under ``torch.utils.checkpoint`` (non-reentrant), so only the
    group-start states are kept and each group is recomputed in backward. The math is unchanged.
    """
    check_scan_shapes(initial_state, queries, eta, ln_weight)
    batch, heads, num_mb, cs, dim = queries.shape

    inputs = (
        *(to_mini_batch_major(t) for t in (queries, keys, targets, eta)),
        per_row(ln_weight, batch),
        per_row(ln_bias, batch),
    )
    # A fresh contiguous state: the first step then sees the same strides as every later one (a compiled
    # step is traced once), and the caller's parameters are never aliased.
    state = tuple(
        t.reshape(batch * heads, *t.shape[2:]).clone(memory_format=torch.contiguous_format)
        for t in initial_state
    )
    group = scan_group_size(checkpoint_group_size, num_mb)
    remat = group is not None and torch.is_grad_enabled()
    if not remat:
        group = num_mb
    pieces = []
    for start in range(0, num_mb, group):
        stop = min(start + group, num_mb)
        if remat:
            result = checkpoint(run_mini_batches, step, state, inputs, start, stop, eps, use_reentrant=False)
        else:
            result = run_mini_batches(step, state, inputs, start, stop, eps)
        state, out = tuple(result[:-1]), result[-1]
        pieces.append(out)
    out = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    return out.view(num_mb, batch, heads, cs, dim).permute(1, 2, 0, 3, 4)
