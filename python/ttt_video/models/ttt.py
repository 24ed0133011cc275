"""Test-Time-Training layers (spec 5): TTT-Linear and TTT-MLP over one primal-form mini-batch scan.

Sequence handling is split in three:

* ``build_ttt_pass_plan`` turns a token layout and a direction into index tensors: the order in which the
  scan reads the layer's ``[text | video]`` tokens (interleave, composed with the reversal for the reverse
  pass), the RoPE table of every scan position, and which token's learning rate each key uses (spec 5.2).
* ``TTTSequenceMixer`` (``ssm``) gathers the tokens into scan order, runs ``ttt`` and scatters back.
* ``TTTLinear`` / ``TTTMLP`` (``ssm.ttt``) hold the parameters and compute projections, targets, learning
  rates and the scan on a sequence already in scan order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import SequenceLayout
from .rope import apply_rotary, rope_cos_sin, video_positions

State = tuple[torch.Tensor, ...]
StepFn = Callable[..., tuple[State, torch.Tensor]]

# --------------------------------------------------------------------------------------------------
# Token orders (spec 5.1a, 5.2, 5.7)
# --------------------------------------------------------------------------------------------------


def segment_chunk_frames(num_segments: int, num_frames: int) -> list[int]:
    """Video frames paired with each prompt in the reference interleave: 13, 12, 12, ... (spec 5.1 step 7)."""
    per_chunk = num_frames // num_segments
    first = per_chunk + num_frames % per_chunk
    return [first] + [per_chunk] * (num_segments - 1)


def interleave_permutation(
    num_segments: int,
    text_length: int,
    tokens_per_frame: int,
    num_frames: int,
    chunk_frames: Sequence[int] | None = None,
) -> torch.Tensor:
    """``perm[k]`` = source index of interleaved position ``k`` (spec 5.1a).

    Source layout: ``[text_0 .. text_{n-1} | video]``; interleaved: ``[text_0, video chunk 0, text_1, ...]``
    where video chunk ``c`` has ``chunk_frames[c]`` frames (default: the reference's 13, 12, 12, ...).
    Undo-interleave is ``perm.argsort()``.
    """
    if chunk_frames is None:
        chunk_frames = segment_chunk_frames(num_segments, num_frames)
    if len(chunk_frames) != num_segments or sum(chunk_frames) != num_frames:
        raise ValueError(
            f"chunk_frames {list(chunk_frames)} do not split {num_frames} frames into {num_segments}"
        )
    num_text = num_segments * text_length
    pieces = []
    first_frame = 0
    for chunk, frames in enumerate(chunk_frames):
        pieces.append(torch.arange(chunk * text_length, (chunk + 1) * text_length))
        start = num_text + first_frame * tokens_per_frame
        pieces.append(torch.arange(start, start + frames * tokens_per_frame))
        first_frame += frames
    return torch.cat(pieces)


def ttt_lr_source_index(permutation: torch.Tensor, mini_batch_size: int, alignment: str) -> torch.Tensor:
    """Source index of the learning rate used by the key at every interleaved position.

    ``"aligned"``: the key's own token. ``"reference"`` (spec 5.2): key ``j`` of interleaved mini-batch ``m``
    uses ``lr[s + j]`` with ``s`` the start of the source mini-batch holding the *last* token of ``m``.
    """
    if alignment == "aligned":
        return permutation
    if alignment != "reference":
        raise ValueError(f"unknown ttt_lr_alignment {alignment!r}")
    last = permutation.view(-1, mini_batch_size)[:, -1]
    first_of_source_batch = (last // mini_batch_size) * mini_batch_size
    offsets = torch.arange(mini_batch_size, device=permutation.device)
    return (first_of_source_batch[:, None] + offsets).reshape(-1)


def reverse_token_order(layout: SequenceLayout) -> torch.Tensor:
    """R of spec 4.6: text chunks in reverse order (tokens inside a chunk kept), video tokens flipped.

    ``R[k]`` is the forward-layout index of reversed position ``k``; R is its own inverse.
    """
    n, length = layout.num_segments, layout.text_length
    text = torch.arange(layout.num_text_tokens).view(n, length).flip(0).reshape(-1)
    video = torch.arange(layout.num_text_tokens, layout.num_tokens).flip(0)
    return torch.cat([text, video])


@dataclass(frozen=True)
class TTTPassPlan:
    """Index tensors of one TTT direction for one layout (built once per shape)."""

    token_order: torch.Tensor  # (N,) layer-layout index read at each scan position
    inverse_order: torch.Tensor  # (N,) scan position of each layer-layout token
    video_index: torch.Tensor  # (N,) index of the token in the pass's video order, -1 for text
    rope_cos: torch.Tensor  # (N, 1, head_dim // 2); identity rows for text tokens
    rope_sin: torch.Tensor
    lr_index: torch.Tensor | None  # (N,) scan position whose learning rate each key uses; None = own


def build_ttt_pass_plan(
    layout: SequenceLayout,
    *,
    reverse: bool,
    head_dim: int,
    theta: float,
    mini_batch_size: int,
    lr_alignment: str = "reference",
    reverse_pairing: str = "reference",
    device: torch.device | str | None = None,
    rope_dtype: torch.dtype = torch.float32,
) -> TTTPassPlan:
    """Index tensors and RoPE tables of one direction; the rotation runs in ``rope_dtype`` (spec: fp32)."""
    n, num_text = layout.num_segments, layout.num_text_tokens
    chunk_frames = segment_chunk_frames(n, layout.num_frames)
    if reverse and reverse_pairing == "aligned":
        # The reverse pass pairs each prompt with exactly the frames it had in the forward pass.
        chunk_frames = chunk_frames[::-1]
    elif reverse_pairing not in ("reference", "aligned"):
        raise ValueError(f"unknown reverse_pairing {reverse_pairing!r}")
    if layout.num_tokens % mini_batch_size != 0:
        raise ValueError(
            f"TTT sequence length {layout.num_tokens} is not a multiple of mini_batch_size {mini_batch_size}"
        )
    # Indices below are in the pass's own layout ("source" order), which is R(layer layout) when reversed.
    perm = interleave_permutation(
        n, layout.text_length, layout.tokens_per_frame, layout.num_frames, chunk_frames
    )
    to_layer = reverse_token_order(layout) if reverse else torch.arange(layout.num_tokens)
    token_order = to_layer[perm]
    inverse_order = token_order.argsort()

    video_index = torch.where(perm >= num_text, perm - num_text, -1)
    positions = video_positions(layout.num_frames, layout.grid_height, layout.grid_width)[
        video_index.clamp(min=0)
    ]
    cos, sin = rope_cos_sin(positions, head_dim, theta, rope_dtype)
    is_text = video_index < 0
    cos[is_text] = 1.0
    sin[is_text] = 0.0

    lr_index = None
    if lr_alignment != "aligned":
        lr_source = ttt_lr_source_index(perm, mini_batch_size, lr_alignment)
        lr_index = perm.argsort()[lr_source]

    def place(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    return TTTPassPlan(
        token_order=place(token_order),
        inverse_order=place(inverse_order),
        video_index=place(video_index),
        rope_cos=place(cos[:, None]),
        rope_sin=place(sin[:, None]),
        lr_index=None if lr_index is None else place(lr_index),
    )


# --------------------------------------------------------------------------------------------------
# The inner model: closed-form gradients and one scan (spec 5.3)
# --------------------------------------------------------------------------------------------------


def layer_norm(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last dim with per-head ``weight``/``bias`` broadcast from ``(1, H, 1, d)``."""
    return torch.addcmul(bias, F.layer_norm(z, z.shape[-1:], eps=eps), weight)


def layer_norm_l2_grad(
    z: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """d/dz of ``1/2 || LN(z) - target ||^2`` per row, in closed form (spec 5.3)."""
    dim = z.shape[-1]
    var, mean = torch.var_mean(z, -1, keepdim=True, correction=0)
    inv_std = torch.rsqrt(var + eps)
    z_hat = (z - mean) * inv_std
    grad_hat = (torch.addcmul(bias, z_hat, weight) - target) * weight
    return (
        dim * grad_hat - grad_hat.sum(-1, keepdim=True) - z_hat * (grad_hat * z_hat).sum(-1, keepdim=True)
    ) * (inv_std / dim)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def gelu_tanh_derivative(x: torch.Tensor) -> torch.Tensor:
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
    """One mini-batch of TTT-Linear: ``f(x) = x W1 + b1``. Shapes (..., cs, d); eta (..., cs)."""
    w1, b1 = state
    grad = layer_norm_l2_grad(k @ w1 + b1, target, ln_weight, ln_bias, eps)
    eta = eta.unsqueeze(-1)
    w1 = w1 - (eta * k).transpose(-1, -2) @ grad
    b1 = b1 - (eta * grad).sum(-2, keepdim=True)
    out = q + layer_norm(q @ w1 + b1, ln_weight, ln_bias, eps)
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
    """One mini-batch of TTT-MLP: ``f(x) = gelu_tanh(x W1 + b1) W2 + b2``."""
    w1, b1, w2, b2 = state
    z1 = k @ w1 + b1
    x2 = gelu_tanh(z1)
    grad2 = layer_norm_l2_grad(x2 @ w2 + b2, target, ln_weight, ln_bias, eps)
    grad1 = (grad2 @ w2.transpose(-1, -2)) * gelu_tanh_derivative(z1)
    eta = eta.unsqueeze(-1)
    w2 = w2 - (eta * x2).transpose(-1, -2) @ grad2
    b2 = b2 - (eta * grad2).sum(-2, keepdim=True)
    w1 = w1 - (eta * k).transpose(-1, -2) @ grad1
    b1 = b1 - (eta * grad1).sum(-2, keepdim=True)
    out = q + layer_norm(gelu_tanh(q @ w1 + b1) @ w2 + b2, ln_weight, ln_bias, eps)
    return (w1, b1, w2, b2), out


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
) -> torch.Tensor:
    """Run ``step`` over the mini-batches, carrying the inner weights.

    ``queries/keys/targets (B, H, NM, cs, d)``, ``eta (B, H, NM, cs)`` (per-key learning rates),
    ``initial_state`` tensors ``(B, H, ...)``, ``ln_weight/ln_bias (H, d)``. Every token of a mini-batch
    reads the weights after that mini-batch's update. Returns ``(B, H, NM, cs, d)``.
    """
    ln_weight = ln_weight[None, :, None, :]
    ln_bias = ln_bias[None, :, None, :]
    # Mini-batch-major memory, so that every step reads contiguous slices (no copy if already so).
    queries, keys, targets, eta = (t.movedim(2, 0).contiguous() for t in (queries, keys, targets, eta))
    state = initial_state
    outputs = []
    for m in range(queries.shape[0]):
        state, out = step(state, queries[m], keys[m], targets[m], eta[m], ln_weight, ln_bias, eps)
        outputs.append(out)
    return torch.stack(outputs).movedim(0, 2)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


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

    def forward(self, x: torch.Tensor, plan: TTTPassPlan) -> torch.Tensor:
        """``x (B, N, D)`` already in scan order -> TTT output ``(B, N, D)`` in scan order."""
        batch, length, _ = x.shape
        head_dim, cs = self.head_dim, self.mini_batch_size
        if length % cs != 0:
            raise ValueError(f"TTT sequence length {length} is not a multiple of mini_batch_size {cs}")
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

        lr = self.learning_rate(x)
        if plan.lr_index is not None:
            lr = lr[:, plan.lr_index]
        # The scan state and arithmetic are fp32 (float64 when the layer runs in float64).
        scan_dtype = torch.promote_types(x.dtype, torch.float32)
        num_mini_batches = length // cs
        eta = (lr / cs).to(scan_dtype).view(batch, num_mini_batches, cs, heads)
        eta = eta.permute(1, 0, 3, 2).contiguous().permute(1, 2, 0, 3)  # (B, H, NM, cs), NM-major memory

        def to_mini_batches(t: torch.Tensor) -> torch.Tensor:
            """(B, N, H, d) -> (B, H, NM, cs, d) laid out mini-batch-major for the scan."""
            t = t.to(scan_dtype).view(batch, num_mini_batches, cs, heads, head_dim)
            return t.permute(1, 0, 3, 2, 4).contiguous().permute(1, 2, 0, 3, 4)

        keys = to_mini_batches(k)
        inner = (local_tensor(p) for p in self.inner_parameters())
        state = tuple(p.to(scan_dtype).expand(batch, *p.shape) for p in inner)
        out = ttt_scan(
            self._step,
            state,
            to_mini_batches(q),
            keys,
            to_mini_batches(v) - keys,
            eta,
            local_tensor(self.ttt_norm_weight).to(scan_dtype),
            local_tensor(self.ttt_norm_bias).to(scan_dtype),
            self.inner_ln_eps,
        )
        out = out.permute(0, 2, 3, 1, 4).reshape(batch, length, heads * head_dim)
        # With tensor parallelism post_norm's input hook gathers the heads of all ranks.
        return self.wo(self.post_norm(out.to(x.dtype)))


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
