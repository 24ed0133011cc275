"""Video clips for `prepare`: probe them, decode them with PyAV, resample them to the dataset's frame rate,
resize and crop them to the dataset's size, and scale them to [-1, 1].

* Time: frame times come from the stream's timestamps, counted from the first frame (exact fractions of
  its time base, so variable frame rates work too). Output frame ``i`` (``0 <= i < 3 n fps + 1``) is the
  source frame on screen at ``i / fps`` seconds: the last one that starts at or before that time. Later
  source frames are never used; times past the last frame keep the last frame. A 16 fps clip of 48n + 1
  frames gives itself back; 24 fps gives source frames ``floor(1.5 i)``; 8 fps repeats every frame twice.
* Space: the frame is scaled by ``s = max(W / w, H / h)`` (each side rounded half up, never below the
  target), so it covers W x H with its aspect ratio kept, then the centre W x H is cut out (the extra
  columns or rows split evenly, the odd one on the right or bottom). Scaling is ``F.interpolate``
  bilinear with ``antialias=True`` in float32: antialiasing keeps downscaled frames free of aliasing (a
  plain bilinear kernel skips pixels when shrinking), and it needs nothing beyond torch. A frame of the
  target size is not resampled at all.
* Values: RGB (PyAV's rgb24 conversion) ``x`` in 0..255 becomes ``2 (x / 255) - 1`` (spec 9.3).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import av
import numpy as np
import torch
import torch.nn.functional as F

Frame = TypeVar("Frame")


class ClipError(ValueError):
    """A clip that cannot be used; the message says why (the caller names the clip and the line)."""


@dataclass(frozen=True)
class ClipInfo:
    """What `probe_clip` finds: ``duration`` from the first frame's start to the last frame's end."""

    duration: Fraction  # seconds
    fps: Fraction  # the stream's average frame rate
    frames: int
    width: int
    height: int


def output_frame_count(segments: int, fps: int) -> int:
    """Frames of a clip of ``segments`` 3-second segments at ``fps``: ``3 n fps + 1`` (48n + 1 at 16)."""
    return 3 * segments * fps + 1


def _reason(error: Exception) -> str:
    """FFmpeg's words without the file name (the caller names the clip)."""
    return getattr(error, "strerror", None) or str(error)


def _open(path: str | os.PathLike):
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise ClipError(
            f"cannot be opened as a video ({_reason(e)}); re-encode it as an mp4 (H.264)"
        ) from None
    if not container.streams.video:
        container.close()
        raise ClipError("holds no video stream")
    return container


def probe_clip(path: str | os.PathLike) -> ClipInfo:
    """Duration, frame rate, frame count and size of the first video stream, from its packets' timestamps
    (demuxed, not decoded); the first frame is decoded to prove the codec works."""
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(iter(container.decode(stream)), None)
        except av.FFmpegError as e:
            raise ClipError(f"cannot be decoded ({_reason(e)}); re-encode it as an mp4 (H.264)") from None
        if first is None:
            raise ClipError("holds no frame")
        width, height = first.width, first.height
    with _open(path) as container:
        stream = container.streams.video[0]
        spans = [(p.pts, p.duration) for p in container.demux(stream) if p.size and p.pts is not None]
        if not spans:
            raise ClipError("has no frame timestamps; remux it into an mp4")
        base = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        fallback = round(1 / (rate * base)) if rate else 0
        start = min(pts for pts, _ in spans)
        end = max(pts + (duration or fallback) for pts, duration in spans)
        duration = Fraction(end - start) * base
        fps = Fraction(rate) if rate else Fraction(len(spans)) / duration
    return ClipInfo(duration, fps, len(spans), width, height)


def resample(timed_frames: Iterable[tuple[Fraction, Frame]], fps: int, count: int) -> Iterator[Frame]:
    """``count`` frames at ``fps`` from ``(start seconds, frame)`` pairs in presentation order, the first
    starting at 0: output frame ``i`` is the last frame starting at or before ``i / fps``. A frame used
    several times is yielded as the same object."""
    held, i = None, 0
    for start, frame in timed_frames:
        while i < count and Fraction(i, fps) < start:
            if held is None:
                raise ClipError(f"the first frame starts at {float(start):.3f} s, not at 0")
            yield held
            i += 1
        if i >= count:
            return
        held = frame
    if held is None:
        raise ClipError("holds no frame")
    for _ in range(i, count):
        yield held


def cover_size(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    """``(w, h)`` that a width x height frame is scaled to so that it covers the target, aspect ratio kept:
    ``s = max(tw / width, th / height)``, each side rounded half up and never below the target."""
    scale = max(Fraction(target_width, width), Fraction(target_height, height))
    w, h = int(width * scale + Fraction(1, 2)), int(height * scale + Fraction(1, 2))
    return max(w, target_width), max(h, target_height)


def to_model_frame(rgb: np.ndarray, width: int, height: int) -> torch.Tensor:
    """``(h, w, 3)`` uint8 RGB -> ``(3, height, width)`` float32 in [-1, 1] (scaled to cover, centre crop)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(torch.float32)
    src_h, src_w = x.shape[1:]
    w, h = cover_size(src_w, src_h, width, height)
    if (w, h) != (src_w, src_h):
        x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = (h - height) // 2, (w - width) // 2
    x = x[:, top : top + height, left : left + width]
    return (x / 255).clamp(0, 1) * 2 - 1


def _timed_frames(container, stream) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    first = None
    for frame in container.decode(stream):
        if frame.pts is None:
            raise ClipError("has a frame without a timestamp; remux it into an mp4")
        first = frame.pts if first is None else first
        yield Fraction(frame.pts - first) * stream.time_base, frame


def read_clip_frames(
    path: str | os.PathLike, fps: int, count: int, width: int, height: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The clip as the VAE takes it: ``(1, 3, count, height, width)`` in [-1, 1], stored in ``dtype``
    (computed in float32, then cast), resampled and resized by the rules of this module's docstring.

    Frames are decoded one at a time; only the output tensor grows with the clip.
    """
    out = torch.empty(1, 3, count, height, width, dtype=dtype)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        last, converted = None, None
        for i, frame in enumerate(resample(_timed_frames(container, stream), fps, count)):
            if frame is not last:
                last, converted = frame, to_model_frame(frame.to_ndarray(format="rgb24"), width, height)
            out[0, :, i] = converted
    return out
