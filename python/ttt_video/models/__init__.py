"""The TTT-Video DiT: configuration, presets and modules."""

from .config import DiTConfig, SequenceLayout
from .dit import TTTVideoDiT, timestep_embedding, unpatchify
from .presets import PRESETS, build_config
from .rope import apply_rotary, rope_angles, rope_cos_sin, video_positions
from .ttt import TTTMLP, TTTLinear, init_ttt_parameters
from .ttt_order import (
    build_ttt_pass_plan,
    interleave_permutation,
    reverse_token_order,
    segment_chunk_frames,
    ttt_lr_source_index,
)
from .ttt_scan import ttt_linear_step, ttt_mlp_step, ttt_scan

__all__ = [
    "PRESETS",
    "DiTConfig",
    "SequenceLayout",
    "TTTLinear",
    "TTTMLP",
    "TTTVideoDiT",
    "apply_rotary",
    "build_config",
    "build_ttt_pass_plan",
    "init_ttt_parameters",
    "interleave_permutation",
    "reverse_token_order",
    "rope_angles",
    "rope_cos_sin",
    "segment_chunk_frames",
    "timestep_embedding",
    "ttt_linear_step",
    "ttt_lr_source_index",
    "ttt_mlp_step",
    "ttt_scan",
    "unpatchify",
    "video_positions",
]
