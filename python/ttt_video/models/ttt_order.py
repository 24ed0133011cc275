"""Token orders of the TTT passes (spec 5.1a, 5.2, 5.7): interleave, reversal, learning-rate index, plans.

``build_ttt_pass_plan`` turns a token layout and a direction into index tensors: the order in which the
scan reads the layer's ``[text | video]`` tokens (interleave, composed with the reversal for the reverse
pass), the RoPE table of every scan position, and which token's learning rate each key uses (spec 5.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .config import SequenceLayout
from .rope import rope_cos_sin, video_positions


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
    reverse: bool = False  # the reverse direction's pass (remat checkpoints the directions separately)


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
        reverse=reverse,
    )
