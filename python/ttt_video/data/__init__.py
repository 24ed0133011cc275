"""Training data: annotation files, clips, and the dataset folder that `prepare` writes (docs/training.md)."""

from .annotations import Annotation, DataError, read_annotations
from .clips import ClipError, ClipInfo, cover_size, output_frame_count, probe_clip, read_clip_frames, resample
from .dataset import DatasetFolder, info_differences

__all__ = [
    "Annotation",
    "ClipError",
    "ClipInfo",
    "DataError",
    "DatasetFolder",
    "cover_size",
    "info_differences",
    "output_frame_count",
    "probe_clip",
    "read_annotations",
    "read_clip_frames",
    "resample",
]
