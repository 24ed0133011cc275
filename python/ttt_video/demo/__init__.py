"""The demo world: synthetic one-object scenes, their storyboards, and detectors that score videos of
them (docs/demo-world.md)."""

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
