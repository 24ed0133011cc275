"""3-D rotary position embedding of video tokens (spec 4.4, 5.1 step 3).

The head vector of size d is split into adjacent pairs ``(x[2m], x[2m+1])``: the first d/4 channels
rotate with the frame index, the next 3d/8 with the patch row and the last 3d/8 with the patch column
(16/24/24 at d = 64). Within one axis of width ``a`` pair ``m`` turns by ``pos * theta**(-2m/a)``.
"""

from __future__ import annotations

import torch


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels given to (time, height, width)."""
    if head_dim % 16 != 0:
        raise ValueError(f"3-D RoPE needs a head dim that is a multiple of 16, got {head_dim}")
    return head_dim // 4, head_dim * 3 // 8, head_dim * 3 // 8


def video_positions(
    num_frames: int, grid_height: int, grid_width: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(t, h, w) of every video token in (t, h, w) row-major order, shape (T*H*W, 3), int64."""
    t, h, w = torch.meshgrid(
        torch.arange(num_frames, device=device),
        torch.arange(grid_height, device=device),
        torch.arange(grid_width, device=device),
        indexing="ij",
    )
    return torch.stack([t.reshape(-1), h.reshape(-1), w.reshape(-1)], dim=-1)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Rotation angle of every pair, shape (N, head_dim // 2), float64."""
    angles = []
    for axis, width in enumerate(axis_dims(head_dim)):
        exponents = torch.arange(0, width, 2, dtype=torch.float64, device=positions.device) / width
        inv_freq = theta ** (-exponents)
        angles.append(positions[:, axis, None].to(torch.float64) * inv_freq)
    return torch.cat(angles, dim=-1)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (N, head_dim // 2), in ``dtype`` (the dtype the rotation runs in)."""
    angles = rope_angles(positions, head_dim, theta)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x (..., d)``; ``cos``/``sin`` broadcast to ``(..., d/2)``.

    The arithmetic runs in the tables' dtype (bf16 reproduces the reference's attention RoPE, spec 4.4)
    and the result is cast back to ``x.dtype``.
    """
    pairs = x.to(cos.dtype).unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)
    return rotated.flatten(-2).to(x.dtype)
