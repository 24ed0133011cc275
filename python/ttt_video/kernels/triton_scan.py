"""The fused Triton TTT scan: argument checks, launch configuration, and autograd.

Forward: ``triton_scan_kernels`` (one program per (batch, head), state in fp32 on chip). Backward: the
forward kernel also writes the inner state at the start of every checkpoint group; the backward pass
recomputes one group at a time from its saved state with the eager PyTorch step under autograd (fp32),
last group first, carrying the state gradient between groups. There is no Triton backward kernel.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
from triton.runtime.interpreter import InterpretedFunction

from ..models.ttt_scan import (
    State,
    check_scan_shapes,
    per_row,
    run_mini_batches,
    scan_group_size,
    to_mini_batch_major,
    ttt_linear_step,
    ttt_mlp_step,
)
from .select import TRITON_DTYPES
from .triton_scan_kernels import ttt_linear_scan_kernel, ttt_mlp_scan_kernel


def launch_config(kind: str, device: torch.device) -> tuple[int, int]:
    """``(num_warps, num_stages)`` for ``kind`` ("linear" | "mlp") on ``device``. Not tuned (no GPU was
    available); docs/model.md says what to tune and why.

    * num_warps: TTT-Linear holds a d x d fp32 state (16 KiB at d = 64) and cs x d tiles: 4 warps, as the
      reference kernel. TTT-MLP holds d x 4d and 4d x d (128 KiB at d = 64) plus cs x 4d intermediates:
      8 warps, to spread that over more registers (it will still spill at d = 64; 16 is the candidate).
    * num_stages: 2 on sm_80+ (Ampere, Hopper) so that the next mini-batch's q/k/target loads are issued
      while the current one computes (cp.async); 1 before sm_80, where there is no async copy.
    """
    warps = 4 if kind == "linear" else 8
    if device.type != "cuda":
        return warps, 1
    major, _ = torch.cuda.get_device_capability(device)
    return warps, 2 if major >= 8 else 1


def _block(n: int) -> int:
    """Power-of-two tile size >= n and >= 16 (the smallest tl.dot tile)."""
    return max(16, triton.next_power_of_2(n))


def _check_inputs(initial_state: State, queries, keys, targets, eta, ln_weight) -> str:
    """Shape / dtype / device checks; returns the inner model kind."""
    check_scan_shapes(initial_state, queries, eta, ln_weight)
    if keys.shape != queries.shape or targets.shape != queries.shape:
        raise ValueError(
            f"ttt_scan_triton: keys {tuple(keys.shape)} and targets {tuple(targets.shape)} must have the "
            f"shape of queries {tuple(queries.shape)}"
        )
    if queries.dtype not in TRITON_DTYPES or keys.dtype != queries.dtype:
        raise ValueError(
            f"ttt_scan_triton: queries and keys must share one dtype of {TRITON_DTYPES} (the matmul dtype), "
            f"got {queries.dtype} and {keys.dtype}; use the eager ttt_scan for float64"
        )
    interpreted = isinstance(ttt_linear_scan_kernel, InterpretedFunction)
    if queries.device.type != "cuda" and not interpreted:
        raise RuntimeError(
            f"ttt_scan_triton needs CUDA tensors, got {queries.device}; on a CPU the kernel runs only in the "
            "Triton interpreter (TRITON_INTERPRET=1 set before triton is imported)"
        )
    kinds = {2: "linear", 4: "mlp"}
    if len(initial_state) not in kinds:
        raise ValueError(
            f"ttt_scan_triton: initial_state must be (W1, b1) or (W1, b1, W2, b2), got {len(initial_state)} tensors"
        )
    return kinds[len(initial_state)]


def _with_output(queries, keys, targets) -> tuple[torch.Tensor, ...]:
    """``queries, keys, targets`` sharing one dense layout with unit last stride (unchanged when they already
    do, else contiguous copies) and an empty output in that layout."""
    out = torch.empty_like(queries)  # keeps the strides of a dense, non-overlapping tensor
    same = all(t.stride() == queries.stride() for t in (keys, targets, out))
    if same and queries.stride(-1) == 1:
        return queries, keys, targets, out
    queries, keys, targets = (t.contiguous() for t in (queries, keys, targets))
    return queries, keys, targets, torch.empty_like(queries)


def run_forward_kernel(
    kind: str,
    initial_state: State,
    queries,
    keys,
    targets,
    eta,
    ln_weight,
    ln_bias,
    eps: float,
    group: int | None,
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Launch the scan. Returns the output (queries' dtype and strides) and, when ``group`` is set, the
    fp32 group-start states ``(B*H, NG, ...)`` (state ``g`` = before mini-batch ``g * group``)."""
    batch, heads, num_mb, cs, dim = queries.shape
    queries, keys, targets, out = _with_output(queries, keys, targets)
    state = [
        t.detach().to(torch.float32).reshape(batch * heads, *t.shape[2:]).contiguous() for t in initial_state
    ]
    ln_w, ln_b = (p.detach().to(torch.float32).contiguous() for p in (ln_weight, ln_bias))
    num_groups = math.ceil(num_mb / group) if group is not None else 1
    saved = (
        [torch.empty(batch * heads, num_groups, *t.shape[1:], device=t.device) for t in state]
        if group
        else None
    )
    hidden = state[0].shape[-1]
    warps, stages = launch_config(kind, queries.device)
    common = dict(
        H=heads, NM=num_mb, CS=cs, D=dim, NG=num_groups, GROUP=group or 1, eps=float(eps),
        BLOCK_CS=_block(cs), BLOCK_D=_block(dim), SAVE_STATES=group is not None,
        INTERPRETED=isinstance(ttt_linear_scan_kernel, InterpretedFunction), num_warps=warps, num_stages=stages,
    )  # fmt: skip
    sequence = (queries, keys, targets, out, eta.detach())
    strides = (*queries.stride()[:4], *eta.stride())
    outputs = saved if saved is not None else state  # never written when SAVE_STATES is off
    with torch.cuda.device(queries.device) if queries.device.type == "cuda" else contextlib.nullcontext():
        if kind == "linear":
            ttt_linear_scan_kernel[(batch * heads,)](
                *sequence, *state, ln_w, ln_b, *outputs, *strides, **common
            )
        else:
            ttt_mlp_scan_kernel[(batch * heads,)](
                *sequence,
                *state,
                ln_w,
                ln_b,
                *outputs,
                *strides,
                HID=hidden,
                BLOCK_HID=_block(hidden),
                **common,
            )
    return out, saved


class TritonScanFunction(torch.autograd.Function):
    """Triton forward that saves group-start states; backward recomputes each group with the eager step."""

    @staticmethod
    def forward(ctx, kind, eps, group, queries, keys, targets, eta, ln_weight, ln_bias, *initial_state):
        out, saved = run_forward_kernel(
            kind, initial_state, queries, keys, targets, eta, ln_weight, ln_bias, eps, group
        )
        ctx.save_for_backward(queries, keys, targets, eta, ln_weight, ln_bias, *saved)
        ctx.kind, ctx.eps, ctx.group = kind, eps, group
        ctx.state_meta = [(t.shape, t.dtype) for t in initial_state]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        queries, keys, targets, eta, ln_weight, ln_bias, *saved = ctx.saved_tensors
        batch, heads, num_mb = queries.shape[:3]
        step = ttt_linear_step if ctx.kind == "linear" else ttt_mlp_step
        originals = (queries, keys, targets, eta)
        sequence = [to_mini_batch_major(t.detach().float()) for t in originals]
        grad_out = to_mini_batch_major(grad_out.float())
        sequence_grads = [torch.zeros_like(t) for t in sequence]
        ln_grads = [torch.zeros(p.shape, device=p.device) for p in (ln_weight, ln_bias)]
        carry: list[torch.Tensor] | None = None  # d loss / d state at the end of the current group
        for g in reversed(range(saved[0].shape[1])):
            start, stop = g * ctx.group, min((g + 1) * ctx.group, num_mb)
            with torch.enable_grad():
                state = tuple(t[:, g].clone().requires_grad_() for t in saved)
                pieces = [t[start:stop].detach().requires_grad_() for t in sequence]
                ln_params = [p.detach().float().requires_grad_() for p in (ln_weight, ln_bias)]
                inputs = (*pieces, *(per_row(p, batch) for p in ln_params))
                *final, out = run_mini_batches(step, state, inputs, 0, stop - start, ctx.eps)
                outputs, upstream = [out], [grad_out[start:stop]]
                if carry is not None:
                    outputs, upstream = outputs + final, upstream + carry
                wrt = (*state, *pieces, *ln_params)
                grads = torch.autograd.grad(outputs, wrt, upstream, allow_unused=True)
            grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(wrt, grads, strict=True)]
            carry = grads[: len(state)]
            for total, gr in zip(sequence_grads, grads[len(state) : len(state) + 4], strict=True):
                total[start:stop] = gr
            for total, gr in zip(ln_grads, grads[len(state) + 4 :], strict=True):
                total += gr

        def unflatten(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return t.view(num_mb, batch, heads, *t.shape[2:]).movedim(0, 2).to(like.dtype)

        state_grads = [
            gr.view(shape).to(dtype) for gr, (shape, dtype) in zip(carry, ctx.state_meta, strict=True)
        ]
        return (
            None,
            None,
            None,
            *(unflatten(gr, t) for gr, t in zip(sequence_grads, originals, strict=True)),
            ln_grads[0].to(ln_weight.dtype),
            ln_grads[1].to(ln_bias.dtype),
            *state_grads,
        )


def ttt_scan_triton(
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
    """The TTT scan of ``ttt_video.models.ttt_scan`` as one fused Triton kernel.

    ``queries/keys (B, H, NM, cs, d)`` in the matmul dtype (bf16, fp16 or fp32; last stride 1, any other
    strides), ``targets (B, H, NM, cs, d)`` and ``eta (B, H, NM, cs)`` in any float dtype (read as fp32),
    ``initial_state`` ``(W1 (B, H, d, d), b1 (B, H, 1, d))`` for TTT-Linear or
    ``(W1 (B, H, d, h), b1 (B, H, 1, h), W2 (B, H, h, d), b2 (B, H, 1, d))`` for TTT-MLP (held in fp32),
    ``ln_weight/ln_bias (H, d)``. Returns ``(B, H, NM, cs, d)`` in the queries' dtype and strides.

    When autograd records, the backward recomputes groups of ``checkpoint_group_size`` mini-batches (all
    of them when None) from states saved by the forward kernel, with the eager fp32 step.
    """
    kind = _check_inputs(initial_state, queries, keys, targets, eta, ln_weight)
    tensors = (queries, keys, targets, eta, ln_weight, ln_bias, *initial_state)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        group = scan_group_size(checkpoint_group_size, queries.shape[2]) or queries.shape[2]
        return TritonScanFunction.apply(kind, eps, group, *tensors)
    out, _ = run_forward_kernel(
        kind, initial_state, queries, keys, targets, eta, ln_weight, ln_bias, eps, None
    )
    return out
