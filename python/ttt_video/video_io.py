"""Frames -> H.264 mp4 (yuv420p) with PyAV, written under a temporary name and renamed when complete.

The same frames give the same file, by construction (scripts/bench_encode.py measures what it costs):
- every frame carries its timestamp (pts = index, time base 1 / fps). The former writer sent none, and
  x264 with CRF (whose rate control uses frame durations) then encoded the same frames differently from one
  call to the next, even within one process;
- RGB -> YUV is integer arithmetic here (`rgb_to_yuv420p`, BT.601 limited range), not swscale inside
  `stream.encode()`, whose SIMD paths are chosen per CPU;
- x264 runs one thread with a synchronous look-ahead. By default it takes its thread count (and slices)
  from the CPUs this process may use, and its output depends on that count: a process pinned to one core
  wrote different frames (up to 60/255 apart) from one on two;
- x264 uses a constant quantiser (`rc=cqp`), which turns off rate control, adaptive quantisation and the
  macroblock tree: no floating-point estimate (some of them in CPU-specific SIMD) decides a quantiser.
What remains depends on the frames alone: x264's integer analysis (its SIMD paths are tested bit-exact
against its C code) and a few scalar floating-point decisions (scene cuts, weighted prediction) that one
binary computes the same way every time.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

# x264's constant quantiser of P frames; it derives I and B frames' from it (ip_ratio 1.40, pb_ratio 1.30:
# about QP - 3 and QP + 2).
# QP 20 matches the former CRF 18 in PSNR (see docs/video-tools.md, scripts/bench_encode.py).
DEFAULT_QP = 20
X264_PRESET = "medium"
X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:sync-lookahead=0:chromaloc=1"

# Stream tags, FFmpeg's AVColorSpace / AVColorRange values: the BT.601 matrix (BT470BG, the same matrix
# as SMPTE170M), limited ("MPEG", "tv") range.
AVCOL_SPC_BT470BG = 5
AVCOL_RANGE_MPEG = 1

# BT.601 luma weights; limited range: Y in [16, 235], Cb/Cr in [16, 240].
_KR, _KB = 0.299, 0.114
_FRACTION_BITS = 16


def _bt601_matrix() -> np.ndarray:
    """RGB -> (Y, Cb, Cr) without offsets, in units of 2**-16, as int64 `(3, 3)`."""
    luma = np.array([_KR, 1.0 - _KR - _KB, _KB])
    cb = (np.array([0.0, 0.0, 1.0]) - luma) / (2 * (1 - _KB))
    cr = (np.array([1.0, 0.0, 0.0]) - luma) / (2 * (1 - _KR))
    matrix = np.stack([luma * 219, cb * 224, cr * 224]) / 255
    return np.rint(matrix * (1 << _FRACTION_BITS)).astype(np.int64)


_BT601 = _bt601_matrix()


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB -> `(3H/2, W)` uint8 yuv420p planes (Y, then Cb, then Cr), as PyAV lays them out.

    BT.601 limited range in 16-bit fixed point, rounded to nearest: Y per pixel, Cb/Cr from the mean of each
    2x2 block (centre-sited). Integer arithmetic, so every machine gives the same bytes. H and W must be even.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {w}x{h}")
    one = 1 << _FRACTION_BITS
    scaled = rgb.astype(np.int64) @ _BT601.T  # (H, W, 3) in units of 2**-16
    y = (scaled[..., 0] + 16 * one + one // 2) >> _FRACTION_BITS
    # Sum of four pixels: units of 2**-18; +128 offset and rounding in the same units.
    chroma = scaled[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).sum(axis=(1, 3))
    cbcr = (chroma + 4 * (128 * one) + 2 * one) >> (_FRACTION_BITS + 2)
    planes = [y.ravel(), cbcr[..., 0].ravel(), cbcr[..., 1].ravel()]
    return np.concatenate(planes).astype(np.uint8).reshape(h * 3 // 2, w)


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """`(B=1, 3, f, H, W)` in [-1, 1] -> `(f, H, W, 3)` uint8, as the reference quantises (spec 10):
    clamp((x + 1) / 2) in the decoder's dtype, then float32, then 255 * x truncated (not rounded)."""
    if frames.ndim != 5 or frames.shape[0] != 1 or frames.shape[1] != 3:
        raise ValueError(f"expected decoded frames (1, 3, f, H, W), got {tuple(frames.shape)}")
    x = ((frames[0] + 1) / 2).clamp(0, 1).float()
    return (255 * x).to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu().numpy()


def _check_settings(fps: int, width: int, height: int, qp: int) -> None:
    if not (isinstance(fps, int) and fps > 0):
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"width and height must be positive integers, got {width!r}x{height!r}")
    if width % 2 or height % 2:
        raise ValueError(f"H.264 with yuv420p needs an even width and height, got {width}x{height}")
    if not (isinstance(qp, int) and 0 <= qp <= 51):
        raise ValueError(f"qp must be an integer in [0, 51] (0 is lossless, higher is smaller), got {qp!r}")


class Mp4Writer:
    """Appends RGB frames to `<path>.partial`; `close()` finishes the file and renames it to `path`.

    `abort()` (or leaving a `with` block on an exception) deletes the partial file, so a crash never
    leaves a truncated mp4 under the final name. `qp` is x264's constant quantiser (see the module
    docstring for why not CRF); the stream is tagged BT.601 limited range.
    """

    def __init__(self, path: str | os.PathLike, fps: int, width: int, height: int, qp: int = DEFAULT_QP):
        _check_settings(fps, width, height, qp)
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.width, self.height = width, height
        self.frames = 0
        self._time_base = Fraction(1, fps)
        self._container = av.open(
            str(self.partial), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        codec = self._stream.codec_context
        codec.thread_count = 1
        codec.colorspace = AVCOL_SPC_BT470BG
        codec.color_range = AVCOL_RANGE_MPEG
        self._stream.options = {"preset": X264_PRESET, "qp": str(qp), "x264-params": X264_PARAMS}

    def write(self, frames: np.ndarray) -> None:
        """`(f, H, W, 3)` uint8 RGB frames of the writer's size."""
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(
                f"expected (f, {self.height}, {self.width}, 3) uint8 frames for {self.path.name}, "
                f"got {frames.dtype} {frames.shape}"
            )
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
            frame.colorspace = AVCOL_SPC_BT470BG
            frame.color_range = AVCOL_RANGE_MPEG
            frame.pts, frame.time_base = self.frames, self._time_base
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
