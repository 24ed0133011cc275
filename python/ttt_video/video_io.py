"""Frames -> H.264 mp4 (yuv420p) with PyAV, written under a temporary name and renamed when complete."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """`(B=1, 3, f, H, W)` in [-1, 1] -> `(f, H, W, 3)` uint8, as the reference quantises (spec 10):
    clamp((x + 1) / 2) in the decoder's dtype, then float32, then 255 * x truncated (not rounded)."""
    if frames.ndim != 5 or frames.shape[0] != 1 or frames.shape[1] != 3:
        raise ValueError(f"expected decoded frames (1, 3, f, H, W), got {tuple(frames.shape)}")
    x = ((frames[0] + 1) / 2).clamp(0, 1).float()
    return (255 * x).to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu().numpy()


class Mp4Writer:
    """Appends RGB frames to `<path>.partial`; `close()` finishes the file and renames it to `path`.

    `abort()` (or leaving a `with` block on an exception) deletes the partial file, so a crash never
    leaves a truncated mp4 under the final name.
    """

    def __init__(self, path: str | os.PathLike, fps: int, width: int, height: int, crf: int = 18):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 with yuv420p needs an even width and height, got {width}x{height}")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.frames = 0
        self._container = av.open(
            str(self.partial), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "medium"}

    def write(self, frames: np.ndarray) -> None:
        """`(f, H, W, 3)` uint8 frames."""
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.frames += 1

    def close(self) -> Path:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        finally:
            self.partial.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
