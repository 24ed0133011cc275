"""Segment-local self-attention (spec 4.4).

Segment ``i`` attends over its own prompt and the 13-frame video window ``[12i, 12i + 13)``; windows
overlap by one frame and the overlap frames receive the mean of the two windows' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import SequenceLayout
from .rope import apply_rotary, rope_cos_sin, video_positions


@dataclass(frozen=True)
class AttentionPlan:
    """Shape-dependent tensors of the local attention, built once per layout and device."""

    rope_cos: torch.Tensor  # (window_tokens, 1, head_dim // 2): window-local (t, h, w) positions
    rope_sin: torch.Tensor
    frame_weight: torch.Tensor  # (T,): 1 / number of windows that contain the frame


def build_attention_plan(
    layout: SequenceLayout,
    head_dim: int,
    theta: float,
    rope_bf16: bool,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> AttentionPlan:
    """``rope_bf16`` reproduces the reference's bf16 tables and rotation (spec 4.4); otherwise the rotation
    runs in fp32 (float64 for a float64 model)."""
    positions = video_positions(layout.window_frames, layout.grid_height, layout.grid_width, device)
    table_dtype = torch.bfloat16 if rope_bf16 else torch.promote_types(dtype, torch.float32)
    cos, sin = rope_cos_sin(positions, head_dim, theta, table_dtype)
    windows_per_frame = torch.zeros(layout.num_frames, dtype=torch.float32, device=device)
    for segment in range(layout.num_segments):
        start = layout.window_start_frame(segment)
        windows_per_frame[start : start + layout.window_frames] += 1
    return AttentionPlan(cos[:, None], sin[:, None], 1.0 / windows_per_frame)


class LocalAttention(nn.Module):
    """q/k/v/o projections with per-head q/k LayerNorm, 3-D RoPE on video tokens, one SDPA per segment."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=eps)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=eps)

    def attend(self, x: torch.Tensor, layout: SequenceLayout, plan: AttentionPlan) -> torch.Tensor:
        """``x (B, N, D)`` in layout ``[text | video]`` -> attention output, same layout."""
        batch = x.shape[0]
        # -1 heads: under tensor parallelism the projections return only this rank's heads.
        heads = (-1, self.head_dim)
        # Projections and q/k norms act per token, so they run once over the whole sequence even though
        # the overlap frames take part in two windows.
        q = self.q_norm(self.q(x).unflatten(-1, heads))
        k = self.k_norm(self.k(x).unflatten(-1, heads))
        v = self.v(x).unflatten(-1, heads)

        num_text = layout.num_text_tokens
        text_length = layout.text_length
        tokens_per_frame = layout.tokens_per_frame
        window_tokens = layout.window_frames * tokens_per_frame
        text_out = torch.empty_like(q[:, :num_text])
        video_out = torch.zeros_like(q[:, num_text:])
        for segment in range(layout.num_segments):
            text = slice(segment * text_length, (segment + 1) * text_length)
            first = layout.window_start_frame(segment) * tokens_per_frame
            video = slice(num_text + first, num_text + first + window_tokens)
            qw = torch.cat([q[:, text], apply_rotary(q[:, video], plan.rope_cos, plan.rope_sin)], dim=1)
            kw = torch.cat([k[:, text], apply_rotary(k[:, video], plan.rope_cos, plan.rope_sin)], dim=1)
            vw = torch.cat([v[:, text], v[:, video]], dim=1)
            out = F.scaled_dot_product_attention(
                qw.transpose(1, 2), kw.transpose(1, 2), vw.transpose(1, 2)
            ).transpose(1, 2)
            text_out[:, text] = out[:, :text_length]
            video_out[:, first : first + window_tokens] += out[:, text_length:]

        weight = plan.frame_weight.to(video_out.dtype).repeat_interleave(tokens_per_frame)
        video_out = video_out * weight[:, None, None]
        out = torch.cat([text_out, video_out], dim=1).flatten(-2)
        return self.o(out.reshape(batch, layout.num_tokens, -1))
