"""Named model sizes (spec 1.3) and a builder that applies overrides."""

from __future__ import annotations

from typing import Any

from .config import DiTConfig

PRESETS: dict[str, dict[str, Any]] = {
    # CogVideoX-5B + TTT (spec 4.1).
    "5B": {"model_dim": 3072, "num_heads": 48, "num_layers": 42, "text_dim": 4096, "time_embed_dim": 512},
    # The reference's "debug" preset.
    "debug": {"model_dim": 512, "num_heads": 8, "num_layers": 6, "text_dim": 512, "time_embed_dim": 512},
    # CPU tests: head_dim 32 (RoPE split 8/12/12); mini-batch 16 so that text length 8 fits 3 s and 9 s
    # on the tiny 8x12 latent grid (8 + 13*24 = 320, 3*8 + 37*24 = 912).
    "tiny": {
        "model_dim": 64,
        "num_heads": 2,
        "num_layers": 2,
        "text_dim": 32,
        "time_embed_dim": 32,
        "mini_batch_size": 16,
    },
}


def build_config(preset: str, **overrides: Any) -> DiTConfig:
    """The named preset with ``overrides`` applied (unknown keys raise ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    return DiTConfig.from_dict({**PRESETS[preset], **overrides})
