"""What `probe` (sdk/video/probe.ts) and `findFfmpeg` (sdk/video/ffmpeg.ts) ask Python, through the bridge.

`probe_video(path)` reads a file with PyAV: the streams, and for the first video stream the packets that are
really there (counted by demuxing, without decoding) next to what the headers declare (frame count,
durations), so that the TypeScript side can tell a complete file from a truncated one.
`ffmpeg_executable()` is the ffmpeg binary that imageio-ffmpeg ships in this environment.
Neither imports torch: a probe costs a PyAV import only.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av


class VideoReadError(Exception):
    """The file exists but PyAV (FFmpeg) cannot open it as a media file."""

    code = "VIDEO_UNREADABLE"


class FfmpegMissingError(Exception):
    """This environment has no usable imageio-ffmpeg binary."""

    code = "FFMPEG_MISSING"


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if not value or time_base is None:
        return None
    return float(value * time_base)


def _video_facts(container: av.container.InputContainer) -> dict[str, Any]:
    """The first video stream: its parameters, declared frames/duration and the packets present."""
    stream = container.streams.video[0]
    codec = stream.codec_context
    rate = stream.base_rate or stream.average_rate or stream.guessed_rate
    packets, demux_error = 0, None
    try:
        # Header-only packets (size 0, e.g. a flush marker) carry no frame.
        packets = sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as e:
        demux_error = f"reading packet {packets + 1} failed: {e}"
    return {
        "packets": packets,
        "demux_error": demux_error,
        "declared_frames": stream.frames or None,
        "stream_duration": _seconds(stream.duration, stream.time_base),
        "fps": [rate.numerator, rate.denominator] if rate else None,
        "width": codec.width,
        "height": codec.height,
        "codec": codec.name,
        "pix_fmt": codec.pix_fmt or "unknown",
    }


def probe_video(path: str) -> dict[str, Any]:
    """The facts of the media file `path`, JSON-able.

    Returns `{"streams": [{"index", "type", "codec"}], "container_duration": seconds | None,
    "video": None | {"packets", "demux_error", "declared_frames", "stream_duration", "fps": [num, den],
    "width", "height", "codec", "pix_fmt"}}`. `packets` counts the non-empty packets of the first video
    stream that are present in the file (one per frame for H.264, VP9 and GIF); `declared_frames` and the
    durations are what the headers say (None when absent). Raises FileNotFoundError or VideoReadError.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist or is not a file")
    try:
        container = av.open(os.fspath(file))
    except av.FFmpegError as e:
        raise VideoReadError(f"cannot read {file}: {e}; is it a complete video file?") from e
    with container:
        streams = [
            {
                "index": s.index,
                "type": s.type,
                "codec": s.codec_context.name if s.codec_context else "unknown",
            }
            for s in container.streams
        ]
        return {
            "streams": streams,
            "container_duration": container.duration / av.time_base if container.duration else None,
            "video": _video_facts(container) if container.streams.video else None,
        }


def ffmpeg_executable() -> str:
    """The path of imageio-ffmpeg's ffmpeg binary in this environment; raises FfmpegMissingError."""
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise FfmpegMissingError(
            f"imageio-ffmpeg is not installed in {sys.prefix} ({e}); `npx ttt-video setup` installs it"
        ) from e
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise FfmpegMissingError(f"imageio-ffmpeg in {sys.prefix} has no ffmpeg binary: {e}") from e
