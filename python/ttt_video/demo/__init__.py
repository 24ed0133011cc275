"""The demo world: synthetic one-object scenes, their storyboards, and detectors that score videos of
them (docs/demo-world.md).

Names are imported on first use, so `python -m ttt_video.demo.world` runs the module fresh."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "read_clip": "dataset",
    "write_clip": "dataset",
    "write_dataset": "dataset",
    "detect_cuts": "detect",
    "detect_segment": "detect",
    "detect_video": "detect",
    "expected_segments": "score",
    "score_video": "score",
    "summarise_scores": "score",
    "CombinationSplit": "world",
    "Mix": "world",
    "SegmentSpec": "world",
    "VideoSpec": "world",
    "combination_split": "world",
    "render_video": "world",
    "sample_video": "world",
    "sample_videos": "world",
    "segment_bounds": "world",
}
__all__ = [
    "CombinationSplit",
    "Mix",
    "SegmentSpec",
    "VideoSpec",
    "combination_split",
    "detect_cuts",
    "detect_segment",
    "detect_video",
    "expected_segments",
    "read_clip",
    "render_video",
    "sample_video",
    "sample_videos",
    "score_video",
    "segment_bounds",
    "summarise_scores",
    "write_clip",
    "write_dataset",
]

if TYPE_CHECKING:
    from .dataset import read_clip, write_clip, write_dataset
    from .detect import detect_cuts, detect_segment, detect_video
    from .score import expected_segments, score_video, summarise_scores
    from .world import (
        CombinationSplit,
        Mix,
        SegmentSpec,
        VideoSpec,
        combination_split,
        render_video,
        sample_video,
        sample_videos,
        segment_bounds,
    )


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
