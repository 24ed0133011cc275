"""Mp4Writer: BT.601 conversion, repeatable encoding across processes and thread settings, quality floor,
atomic writes, and bad inputs. Also runnable as `python test_video_io.py --encode ...` (the worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import ttt_video
from ttt_video.video_io import DEFAULT_QP, Mp4Writer, rgb_to_yuv420p

FPS = 16
# Repeatability needs a frame big enough for x264's automatic threading to matter: at 192x128 the former
# writer (automatic threads) gave different frames pinned to one CPU than on two.
WIDTH, HEIGHT, FRAMES = 192, 128, 17


def clip(width: int = WIDTH, height: int = HEIGHT, frames: int = FRAMES, grain: float = 2.0) -> np.ndarray:
    """`(f, H, W, 3)` uint8: moving sinusoids in R, G, B, plus Gaussian grain (seed 0)."""
    t = np.arange(frames)[:, None, None] / FPS
    y = np.arange(height)[None, :, None] / height
    x = np.arange(width)[None, None, :] / width
    red = 128 + 100 * np.sin(2 * np.pi * (3 * x + 0.5 * t)) * np.cos(2 * np.pi * (2 * y - 0.3 * t))
    green = 128 + 100 * np.sin(2 * np.pi * (5 * x * y + 0.7 * t))
    blue = 128 + 100 * np.cos(2 * np.pi * (4 * y + x + 0.2 * t))
    rgb = np.stack([np.broadcast_to(c, (frames, height, width)) for c in (red, green, blue)], axis=-1)
    rgb = rgb + np.random.default_rng(0).normal(0, grain, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def decode_planes(path: Path) -> np.ndarray:
    """`(f, 3H/2, W)` uint8: the decoded yuv420p planes, no colour conversion."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="yuv420p") for f in container.decode(video=0)])


def bt601_float(rgb: np.ndarray) -> np.ndarray:
    """`(..., 3)` -> float64 limited-range BT.601 (Y, Cb, Cr), unrounded (the textbook formulas)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack(
        [16 + 219 / 255 * luma, 128 + 224 / 255 * (b - luma) / 1.772, 128 + 224 / 255 * (r - luma) / 1.402],
        -1,
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


# ------------------------------------------------------------------------------------------ conversion


def test_rgb_to_yuv420p_known_colours():
    # The BT.601 8-bit values every video reference lists.
    colours = {
        (0, 0, 0): (16, 128, 128),
        (255, 255, 255): (235, 128, 128),
        (255, 0, 0): (81, 90, 240),
        (0, 255, 0): (145, 54, 34),
        (0, 0, 255): (41, 240, 110),
    }
    for rgb, yuv in colours.items():
        planes = rgb_to_yuv420p(np.full((2, 2, 3), rgb, dtype=np.uint8))
        assert (planes[:2] == yuv[0]).all() and planes[2, 0] == yuv[1] and planes[2, 1] == yuv[2], rgb


def test_rgb_to_yuv420p_rounds_the_float64_formulas():
    # 64 levels of each channel from 0 to 255 (64^3 colours), laid out so each 2x2 block mixes four colours.
    levels = np.rint(np.linspace(0, 255, 64)).astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(512, 512, 3)
    planes = rgb_to_yuv420p(grid)
    ref = bt601_float(grid)
    y = planes[:512].astype(np.float64)
    cb = planes[512:640].reshape(256, 256).astype(np.float64)  # a 256x256 plane fills 128 rows of 512
    cr = planes[640:].reshape(256, 256).astype(np.float64)
    block_mean = ref[..., 1:].reshape(256, 2, 256, 2, 2).mean(axis=(1, 3))
    # Rounded to nearest; the 16-bit fixed-point coefficients add at most 3 * 255 * 2**-17 < 0.006.
    assert np.abs(y - ref[..., 0]).max() <= 0.506
    assert np.abs(cb - block_mean[..., 0]).max() <= 0.506
    assert np.abs(cr - block_mean[..., 1]).max() <= 0.506
    assert y.min() == 16 and y.max() == 235 and cb.min() >= 16 and cr.max() <= 240


def test_rgb_to_yuv420p_rejects_bad_frames():
    with pytest.raises(ValueError, match="even width and height, got 3x2"):
        rgb_to_yuv420p(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB frame, got float32"):
        rgb_to_yuv420p(np.zeros((2, 2, 3), np.float32))


# ------------------------------------------------------------------------------------------ encoding


def test_lossless_qp0_decodes_to_exactly_the_converted_planes(tmp_path):
    frames = clip(frames=5)
    with Mp4Writer(tmp_path / "lossless.mp4", FPS, WIDTH, HEIGHT, qp=0) as writer:
        writer.write(frames)
    expected = np.stack([rgb_to_yuv420p(f) for f in frames])
    assert np.array_equal(decode_planes(tmp_path / "lossless.mp4"), expected)


def encode_in_process(out: Path, cpus: set[int] | None, omp_threads: str | None) -> None:
    """Runs `_encode_worker` in a fresh interpreter on the same ttt_video, pinned to `cpus`."""
    package = Path(ttt_video.__file__).resolve().parents[1]
    command = [sys.executable, __file__, "--encode", str(out), str(package)]
    command += [",".join(map(str, sorted(cpus)))] if cpus else []
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env |= {"PYTHONPATH": str(package)} | ({"OMP_NUM_THREADS": omp_threads} if omp_threads else {})
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)


def test_same_frames_same_file_across_processes_and_thread_settings(tmp_path):
    # Mp4Writer has no thread option: x264's output depends on its thread count, so it is pinned to one.
    # What varies here is what a machine or launcher varies: the CPUs the process may use (x264's automatic
    # thread count follows them) and OMP_NUM_THREADS. On a one-CPU machine only the latter varies.
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    settings = [({cpus[0]} if cpus else None, "1"), (set(cpus) or None, str(max(2, len(cpus)))), (None, None)]
    outs = [tmp_path / f"run{i}.mp4" for i in range(len(settings))]
    for out, (affinity, omp_threads) in zip(outs, settings, strict=True):
        encode_in_process(out, affinity, omp_threads)
    # And twice in this process: the former writer (no frame timestamps, CRF) differed even here.
    for i in range(2):
        outs.append(tmp_path / f"here{i}.mp4")
        with Mp4Writer(outs[-1], FPS, WIDTH, HEIGHT) as writer:
            writer.write(clip())
    planes = [decode_planes(out) for out in outs]
    assert planes[0].shape == (FRAMES, HEIGHT * 3 // 2, WIDTH)
    for other in planes[1:]:
        assert np.array_equal(planes[0], other)
    assert all(out.read_bytes() == outs[0].read_bytes() for out in outs[1:])
    # The settings that make it so, as x264 records them in the stream.
    sei = outs[0].read_bytes().split(b"x264 - core", 1)[1].split(b"\0", 1)[0].decode()
    for setting in ("threads=1", "lookahead_threads=1", "sliced_threads=0", "rc=cqp", "mbtree=0", "aq=0"):
        assert f" {setting} " in f" {sei} ", setting
    assert f" qp={DEFAULT_QP} " in sei


def test_quality_floor_and_colour_tags(tmp_path):
    frames = clip(frames=9)
    with Mp4Writer(tmp_path / "v.mp4", FPS, WIDTH, HEIGHT) as writer:
        writer.write(frames)
    with av.open(str(tmp_path / "v.mp4")) as container:
        decoded = list(container.decode(video=0))
    assert (decoded[0].colorspace, decoded[0].color_range) == (5, 1)  # BT470BG (BT.601), limited range
    assert [f.pts * f.time_base for f in decoded] == [Fraction(i, FPS) for i in range(9)]
    luma = np.stack([f.to_ndarray(format="yuv420p")[:HEIGHT] for f in decoded])
    rgb = np.stack([f.to_ndarray(format="rgb24") for f in decoded])
    # Measured 2026-11-30 at QP 20 (x264 core 165): luma 44.81 dB against the unrounded BT.601 luma, RGB
    # 32.86 dB, where the yuv420p conversion alone (no encoder) gives 33.67 dB at this size.
    conversion_only = np.stack(
        [
            av.VideoFrame.from_ndarray(rgb_to_yuv420p(f), format="yuv420p").to_ndarray(format="rgb24")
            for f in frames
        ]
    )
    assert psnr(luma, bt601_float(frames)[..., 0]) > 43.0
    assert psnr(rgb, frames) > 32.0
    assert psnr(rgb, frames) > psnr(conversion_only, frames) - 1.5


# ------------------------------------------------------------------------------------------ the writer


def test_close_renames_and_abort_removes(tmp_path):
    out = tmp_path / "video.mp4"
    writer = Mp4Writer(out, FPS, 64, 48)
    writer.write(clip(64, 48, 3))
    writer.write(clip(64, 48, 2))
    assert writer.partial.exists() and not out.exists()
    assert writer.close() == out and not writer.partial.exists()
    assert writer.frames == 5
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.frames, stream.average_rate, float(stream.duration * stream.time_base)) == (
            5,
            16,
            5 / 16,
        )

    with pytest.raises(RuntimeError, match="boom"), Mp4Writer(tmp_path / "b.mp4", FPS, 64, 48) as writer:
        writer.write(clip(64, 48, 2))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [out]


def test_rejects_bad_settings_and_frames(tmp_path):
    with pytest.raises(ValueError, match="even width and height, got 63x48"):
        Mp4Writer(tmp_path / "a.mp4", FPS, 63, 48)
    with pytest.raises(ValueError, match=r"qp must be an integer in \[0, 51\].*got 52"):
        Mp4Writer(tmp_path / "a.mp4", FPS, 64, 48, qp=52)
    with pytest.raises(ValueError, match="fps must be a positive integer, got 0"):
        Mp4Writer(tmp_path / "a.mp4", 0, 64, 48)
    with Mp4Writer(tmp_path / "a.mp4", FPS, 64, 48) as writer:
        with pytest.raises(
            ValueError, match=r"expected \(f, 48, 64, 3\) uint8 frames for a.mp4, got uint8 \(2, 64, 48, 3\)"
        ):
            writer.write(np.zeros((2, 64, 48, 3), np.uint8))
        with pytest.raises(ValueError, match="got float32"):
            writer.write(np.zeros((2, 48, 64, 3), np.float32))
        writer.write(clip(64, 48, 1))


def _encode_worker(out: str, package: str, cpus: str | None = None) -> None:
    """Pins this process to `cpus` (before x264 counts them) and writes `clip()` to `out`."""
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    imported = Path(ttt_video.__file__).resolve().parents[1]
    if imported != Path(package):
        raise SystemExit(f"the worker imported ttt_video from {imported}, not {package}")
    with Mp4Writer(out, FPS, WIDTH, HEIGHT) as writer:
        writer.write(clip())


if __name__ == "__main__" and sys.argv[1:2] == ["--encode"]:
    _encode_worker(*sys.argv[2:])
