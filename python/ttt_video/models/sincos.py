"""Fixed 3-D sin-cos position embeddings of the video tokens: `DiTConfig.sincos_pos_embedding`.

CogVideoX-5B, and so the research system, gives video tokens their place only through RoPE in attention,
which is relative: on a plain background every token sees the same thing, so the model cannot tell where
in the frame it is drawing until it has learned to read the frame's edges. The big model learns that; a
tiny one trained for minutes does not (the demo model drew the right background and no object).
CogVideoX-2B adds fixed sin-cos embeddings of each token's position to the patch embeddings; this does
the same, on top of RoPE, when the switch is on (off by default, as in the 5B model).

A token's temporal position is its latent frame's place inside its 3-second segment (the prefix frame
counts in the first segment only), as the local attention's RoPE windows see it, so a segment looks the
same at every place in a video. Width: a quarter of the channels for time, the rest split evenly between
rows and columns (each part even); each part is `[sin(p w_i), cos(p w_i)]`, `w_i = 10000^(-i / half)`.
"""

from __future__ import annotations

import functools

import torch


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """`(N, dim)` float64 sin-cos features of integer `positions` `(N,)`; `dim` even."""
    if dim <= 0 or dim % 2:
        raise ValueError(f"sincos_1d: dim must be a positive even number, got {dim}")
    half = dim // 2
    omega = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    angles = positions.to(torch.float64)[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def segment_frame_positions(frames: int, frames_per_segment: int, prefix_frames: int) -> torch.Tensor:
    """Each latent frame's place inside its segment: 0..12 in the first, then 1..12 again per segment."""
    t = torch.arange(frames)
    later = (t - prefix_frames) % frames_per_segment + prefix_frames
    return torch.where(t < prefix_frames, t, later)


def split_dims(dim: int) -> tuple[int, int, int]:
    """(time, rows, columns) channel counts: a quarter for time, the rest halved, all even."""
    time = dim // 4 // 2 * 2
    rows = (dim - time) // 2 // 2 * 2
    columns = dim - time - rows
    if min(time, rows, columns) <= 0 or columns % 2:
        raise ValueError(f"sin-cos position embedding: model_dim {dim} cannot be split into even parts")
    return time, rows, columns


@functools.lru_cache(maxsize=8)
def video_position_embedding(
    frames: int, height: int, width: int, dim: int, frames_per_segment: int, prefix_frames: int
) -> torch.Tensor:
    """`(frames * height * width, dim)` float32 embeddings in token order (frame, row, column)."""
    d_time, d_rows, d_columns = split_dims(dim)
    t = segment_frame_positions(frames, frames_per_segment, prefix_frames)
    t, y, x = torch.meshgrid(t, torch.arange(height), torch.arange(width), indexing="ij")
    parts = [
        sincos_1d(t.flatten(), d_time),
        sincos_1d(y.flatten(), d_rows),
        sincos_1d(x.flatten(), d_columns),
    ]
    return torch.cat(parts, dim=1).to(torch.float32)
