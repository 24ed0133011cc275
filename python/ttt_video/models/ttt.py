"""Test-Time-Training layers (spec 5): the TTT-Linear / TTT-MLP modules, their sequence mixer, the tanh
gates and their initialisation.

* ``ttt_order``: token orders and the per-direction ``TTTPassPlan`` (interleave, reversal, lr index).
* ``ttt_scan``: the inner model (closed-form gradients, one step) and the eager scan.
* ``ttt_video.kernels``: the fused Triton scan, chosen per call by ``TTTBase.kernel``.
* here: ``TTTLinear`` / ``TTTMLP`` (``ssm.ttt``) hold the parameters and compute projections, targets,
  learning rates and the scan on a sequence already in scan order; ``TTTSequenceMixer`` (``ssm``) gathers
  the tokens into scan order, runs ``ttt`` and scatters back.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.select import TTT_KERNELS, select_ttt_kernel
from .rope import apply_rotary
from .ttt_order import TTTPassPlan
from .ttt_scan import State, StepFn, ttt_linear_step, ttt_mlp_step, ttt_scan


def scan_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The scan state and arithmetic are fp32 (float64 when the layer runs in float64)."""
    return torch.promote_types(dtype, torch.float32)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``t``: the local shard of a DTensor (tensor parallelism shards the per-head
    parameters on dim 0, see ``ttt_video.parallel``); any other tensor unchanged."""
    to_local = getattr(t, "to_local", None)
    return to_local() if to_local is not None else t


class TTTBase(nn.Module):
    """Projections, L2-normalised and rotated q/k, normalised targets, learning rates, scan, output."""

    step: StepFn

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mini_batch_size: int,
        base_lr: float,
        inner_ln_eps: float = 1e-6,
        target_eps: float = 1e-8,
        layer_norm_eps: float = 1e-6,
        compile: bool = False,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.mini_batch_size = mini_batch_size
        self.base_lr = base_lr
        self.inner_ln_eps = inner_ln_eps
        self.target_eps = target_eps
        self.wq = nn.Linear(dim, dim)
        self.wk = nn.Linear(dim, dim)
        self.wv = nn.Linear(dim, dim)
        self.wo = nn.Linear(dim, dim)
        self.post_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.learnable_ttt_lr_weight = nn.Parameter(torch.empty(num_heads, 1, dim))
        self.learnable_ttt_lr_bias = nn.Parameter(torch.empty(num_heads, 1))
        self.ttt_norm_weight = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.ttt_norm_bias = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self._step: StepFn = torch.compile(type(self).step, dynamic=False) if compile else type(self).step
        if kernel not in TTT_KERNELS:
            raise ValueError(f"{type(self).__name__}: kernel must be one of {TTT_KERNELS}, got {kernel!r}")
        # Which scan runs ("auto" | "triton" | "eager", see ttt_video.kernels.select), read at every call.
        self.kernel = kernel
        # Training sets this from outside (spec 5.6): remat groups of this many mini-batches; None = off.
        self.scan_checkpoint_group_size: int | None = None

    def inner_parameters(self) -> State:
        raise NotImplementedError

    def learning_rate(self, x: torch.Tensor) -> torch.Tensor:
        """``base_lr * sigmoid(w_h . x + b_h) / head_dim`` per token and head, shape (B, N, H)."""
        weight = local_tensor(self.learnable_ttt_lr_weight)
        bias = local_tensor(self.learnable_ttt_lr_bias)
        logits = F.linear(x, weight.squeeze(1), bias.squeeze(1))
        return self.base_lr * torch.sigmoid(logits) / self.head_dim

    def reconstruction_values(self, v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``XK + gamma * normalise(XV - XK) + beta`` (spec 5.1 step 4); std unbiased, eps outside the root."""
        diff = v - k
        mean = diff.mean(-1, keepdim=True)
        std = diff.std(-1, keepdim=True)
        normalised = (diff - mean) / (std + self.target_eps)
        return k + local_tensor(self.ttt_norm_weight) * normalised + local_tensor(self.ttt_norm_bias)

    def scan_inputs(
        self, x: torch.Tensor, plan: TTTPassPlan
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys ``(B, N, H, d)`` in ``x.dtype``, targets ``XV - XK`` ``(B, N, H, d)`` in the scan
        dtype, and the learning rate of every key ``(B, N, H)`` (spec 5.1, 5.2), all in scan order."""
        head_dim = self.head_dim
        q = self.wq(x)
        # Under tensor parallelism wq/wk/wv return only this rank's heads, and the per-head parameters
        # below are this rank's shards: the scan runs on the local heads.
        heads = q.shape[-1] // head_dim
        q = F.normalize(q.unflatten(-1, (heads, head_dim)), dim=-1)
        k = F.normalize(self.wk(x).unflatten(-1, (heads, head_dim)), dim=-1)
        v = self.wv(x).unflatten(-1, (heads, head_dim))
        q = apply_rotary(q, plan.rope_cos, plan.rope_sin)
        k = apply_rotary(k, plan.rope_cos, plan.rope_sin)
        v = self.reconstruction_values(v, k)
        scan_dtype = scan_dtype_for(x.dtype)
        targets = v.to(scan_dtype) - k.to(scan_dtype)
        lr = self.learning_rate(x)
        if plan.lr_index is not None:
            lr = lr[:, plan.lr_index]
        return q, k, targets, lr

    def forward(self, x: torch.Tensor, plan: TTTPassPlan) -> torch.Tensor:
        """``x (B, N, D)`` already in scan order -> TTT output ``(B, N, D)`` in scan order."""
        length, cs = x.shape[1], self.mini_batch_size
        if length % cs != 0:
            raise ValueError(f"TTT sequence length {length} is not a multiple of mini_batch_size {cs}")
        q, k, targets, lr = self.scan_inputs(x, plan)
        kernel = select_ttt_kernel(self.kernel, x.device, x.dtype)
        scan = self.triton_scan if kernel == "triton" else self.eager_scan
        out = scan(q, k, targets, lr)
        # With tensor parallelism post_norm's input hook gathers the heads of all ranks.
        return self.wo(self.post_norm(out.to(x.dtype)))

    def initial_state(self, batch: int, dtype: torch.dtype) -> State:
        """The inner parameters (this rank's heads) tiled over the batch: tensors ``(B, H, ...)``."""
        local = (local_tensor(p).to(dtype) for p in self.inner_parameters())
        return tuple(p.expand(batch, *p.shape) for p in local)

    def ln_parameters(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return local_tensor(self.ttt_norm_weight).to(dtype), local_tensor(self.ttt_norm_bias).to(dtype)

    def eager_scan(
        self, q: torch.Tensor, k: torch.Tensor, targets: torch.Tensor, lr: torch.Tensor
    ) -> torch.Tensor:
        """The PyTorch scan in fp32 (float64 for a float64 layer) -> ``(B, N, H*d)``."""
        batch, length, heads, head_dim = q.shape
        cs, scan_dtype = self.mini_batch_size, targets.dtype
        num_mb = length // cs
        eta = (lr / cs).to(scan_dtype).view(batch, num_mb, cs, heads)
        eta = eta.permute(1, 0, 3, 2).contiguous().permute(1, 2, 0, 3)  # (B, H, NM, cs), NM-major memory

        def to_mini_batches(t: torch.Tensor) -> torch.Tensor:
            """(B, N, H, d) -> (B, H, NM, cs, d) laid out mini-batch-major for the scan."""
            t = t.to(scan_dtype).view(batch, num_mb, cs, heads, head_dim)
            return t.permute(1, 0, 3, 2, 4).contiguous().permute(1, 2, 0, 3, 4)

        scan = functools.partial(ttt_scan, self._step)
        return self._scan_sequence(scan, scan_dtype, to_mini_batches, q, k, targets, eta)

    def triton_scan(
        self, q: torch.Tensor, k: torch.Tensor, targets: torch.Tensor, lr: torch.Tensor
    ) -> torch.Tensor:
        """The fused Triton scan: matmul operands in ``q.dtype``, state in fp32 -> ``(B, N, H*d)``.

        The kernel reads the ``(B, N, H, d)`` tensors through strides, so no copy is made."""
        from ..kernels import ttt_scan_triton

        batch, length, heads = q.shape[:3]
        cs = self.mini_batch_size
        num_mb = length // cs

        def to_mini_batches(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, num_mb, cs, heads, -1).permute(0, 3, 1, 2, 4)

        eta = (lr / cs).to(targets.dtype).view(batch, num_mb, cs, heads).permute(0, 3, 1, 2)
        return self._scan_sequence(ttt_scan_triton, torch.float32, to_mini_batches, q, k, targets, eta)

    def _scan_sequence(
        self, scan, state_dtype: torch.dtype, to_mini_batches, q, k, targets, eta
    ) -> torch.Tensor:
        """``scan(initial_state, queries, keys, targets, eta, ln_weight, ln_bias, eps, ...)`` (eager or
        Triton) on the ``(B, H, NM, cs, d)`` views ``to_mini_batches`` makes of ``(B, N, H, d)`` q, k and
        targets, with the state and LN parameters in ``state_dtype``; ``eta (B, H, NM, cs)`` -> ``(B, N, H*d)``."""
        batch, length, heads, head_dim = q.shape
        out = scan(
            self.initial_state(batch, state_dtype),
            to_mini_batches(q),
            to_mini_batches(k),
            to_mini_batches(targets),
            eta,
            *self.ln_parameters(state_dtype),
            self.inner_ln_eps,
            checkpoint_group_size=self.scan_checkpoint_group_size,
        )
        return out.permute(0, 2, 3, 1, 4).reshape(batch, length, heads * head_dim)


class TTTLinear(TTTBase):
    step = staticmethod(ttt_linear_step)

    def __init__(self, dim: int, num_heads: int, **kwargs) -> None:
        super().__init__(dim, num_heads, **kwargs)
        self.W1 = nn.Parameter(torch.empty(num_heads, self.head_dim, self.head_dim))
        self.b1 = nn.Parameter(torch.empty(num_heads, 1, self.head_dim))

    def inner_parameters(self) -> State:
        return (self.W1, self.b1)


class TTTMLP(TTTBase):
    step = staticmethod(ttt_mlp_step)

    def __init__(self, dim: int, num_heads: int, hidden_ratio: int = 4, **kwargs) -> None:
        super().__init__(dim, num_heads, **kwargs)
        hidden = hidden_ratio * self.head_dim
        self.W1 = nn.Parameter(torch.empty(num_heads, self.head_dim, hidden))
        self.b1 = nn.Parameter(torch.empty(num_heads, 1, hidden))
        self.W2 = nn.Parameter(torch.empty(num_heads, hidden, self.head_dim))
        self.b2 = nn.Parameter(torch.empty(num_heads, 1, self.head_dim))

    def inner_parameters(self) -> State:
        return (self.W1, self.b1, self.W2, self.b2)


class TTTSequenceMixer(nn.Module):
    """Runs ``ttt`` over one direction's token order and returns the result in the layer's layout."""

    def __init__(self, ttt: TTTBase) -> None:
        super().__init__()
        self.ttt = ttt

    def forward(self, x: torch.Tensor, plan: TTTPassPlan) -> torch.Tensor:
        return self.ttt(x[:, plan.token_order], plan)[:, plan.inverse_order]


class TanhGate(nn.Module):
    """``tanh(gating_alpha) * y`` with a per-channel ``gating_alpha`` (spec 4.6)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gating_alpha = nn.Parameter(torch.empty(dim))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.gating_alpha) * y


# --------------------------------------------------------------------------------------------------
# Initialisation (spec 5.5, "constructor init")
# --------------------------------------------------------------------------------------------------


def as_generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def fill_uniform_(param: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    """Draw on the CPU (so a seed gives the same weights on every device), then copy into ``param``."""
    if param.is_meta:
        return
    param.copy_(torch.empty(param.shape).uniform_(-bound, bound, generator=generator))


@torch.no_grad()
def fill_normal_(param: torch.Tensor, std: float, generator: torch.Generator) -> None:
    if param.is_meta:
        return
    param.copy_(torch.empty(param.shape).normal_(0.0, std, generator=generator))


@torch.no_grad()
def fill_constant_(param: torch.Tensor, value: float) -> None:
    if not param.is_meta:
        param.fill_(value)


def init_linear_(linear: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` init: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(linear.in_features)
    fill_uniform_(linear.weight, bound, generator)
    if linear.bias is not None:
        fill_uniform_(linear.bias, bound, generator)


def init_ttt_parameters(
    model: nn.Module, seed: int | torch.Generator, gating_alpha: float | None = None
) -> None:
    """Re-initialise only the TTT layers and the tanh gates of ``model`` (spec 5.5, constructor init).

    ``gating_alpha`` defaults to ``model.config.gating_alpha_init`` when the model has a config, else 0.1.

    Draw order: modules in ``named_modules`` order; per TTT layer wq, wk, wv, wo (weight then bias),
    the learning-rate weight, then the inner weights W1 (, W2).
    """
    if gating_alpha is None:
        gating_alpha = getattr(getattr(model, "config", None), "gating_alpha_init", 0.1)
    generator = as_generator(seed)
    for module in model.modules():
        if isinstance(module, TTTBase):
            for linear in (module.wq, module.wk, module.wv, module.wo):
                init_linear_(linear, generator)
            fill_constant_(module.post_norm.weight, 1.0)
            fill_constant_(module.post_norm.bias, 0.0)
            fill_normal_(module.learnable_ttt_lr_weight, 0.02, generator)
            fill_constant_(module.learnable_ttt_lr_bias, 0.0)
            fill_constant_(module.ttt_norm_weight, 1.0)
            fill_constant_(module.ttt_norm_bias, 0.0)
            for name in ("W1", "W2"):
                if hasattr(module, name):
                    fill_normal_(getattr(module, name), 0.02, generator)
            for name in ("b1", "b2"):
                if hasattr(module, name):
                    fill_constant_(getattr(module, name), 0.0)
        elif isinstance(module, TanhGate):
            fill_constant_(module.gating_alpha, gating_alpha)
