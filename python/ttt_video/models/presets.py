"""Named model sizes (spec 1.3), read from the contract's model facts, and a builder that applies overrides."""

from __future__ import annotations

from typing import Any

from ..contracts.generated import MODEL_PRESETS
from .config import DiTConfig

PRESETS: dict[str, dict[str, Any]] = {name: dict(facts) for name, facts in MODEL_PRESETS.items()}


def build_config(preset: str, **overrides: Any) -> DiTConfig:
    """The named preset with ``overrides`` applied (unknown keys raise ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    return DiTConfig.from_dict({**PRESETS[preset], **overrides})
