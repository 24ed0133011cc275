#!/usr/bin/env python
"""Quality, size, speed and repeatability of the mp4 encoding: the former settings against Mp4Writer's.

    python scripts/bench_encode.py                 # the table of docs/video-tools.md
    python scripts/bench_encode.py --qp 18,20,22   # Mp4Writer at other quantisers too

Clips (16 fps):
- demo 96x64: the tiny random-weight VAE (the demo's) decoding seeded N(0, 1) latents, 13 latent frames -> 49
  frames, quantised as the pipeline does;
- synthetic 720x480: moving sinusoids in R, G, B, a moving red disc, Gaussian grain of sigma 2, 49 frames.
Rows:
- `yuv420p only`: the frames through `rgb_to_yuv420p` and back, no encoder (what 4:2:0 chroma costs);
- `before`: the former Mp4Writer: swscale's conversion inside `stream.encode()`, CRF 18, preset medium,
  x264's automatic threads;
- `after qp N`: Mp4Writer (integer BT.601, one x264 thread, constant quantiser N).
Columns: PSNR of the decoded RGB (PyAV's yuv -> rgb24) against the source frames; PSNR of the decoded luma
against the source's float64 BT.601 luma (the encoder's own loss); bytes per frame; encoded frames per
second (one run, wall clock, this process); `repeatable`: five encodes decode to identical frames: two in
this process, three in fresh processes (pinned to one CPU, to all CPUs, with OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import ttt_video  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(ROOT / "python"))

from ttt_video.video_io import DEFAULT_QP, Mp4Writer, rgb_to_yuv420p

FPS = 16


def demo_clip(frames: int = 49) -> np.ndarray:
    """`(f, 64, 96, 3)` uint8: the tiny demo VAE (random weights, seed 0) decoding seeded latents."""
    import torch
    from ttt_video.tiny_parts import make_tiny_vae
    from ttt_video.vae.model import CogVideoXVAE
    from ttt_video.video_io import frames_to_uint8

    latent_frames = (frames - 1) // 4 + 1
    with tempfile.TemporaryDirectory() as tmp:
        vae = CogVideoXVAE.from_pretrained(make_tiny_vae(tmp, seed=0))
    z = torch.randn(
        1, 16, latent_frames, 8, 12, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        return frames_to_uint8(vae.decode(z))[:frames]


def synthetic_clip(width: int = 720, height: int = 480, frames: int = 49) -> np.ndarray:
    """`(f, H, W, 3)` uint8: smooth moving sinusoids, a moving red disc and grain of sigma 2 (seed 0)."""
    t = np.arange(frames)[:, None, None] / FPS
    y = np.arange(height)[None, :, None] / height
    x = np.arange(width)[None, None, :] / width
    red = 128 + 100 * np.sin(2 * np.pi * (3 * x + 0.5 * t)) * np.cos(
        2 * np.pi * (2 * y - 0.3 * t)
    )
    green = 128 + 100 * np.sin(2 * np.pi * (5 * x * y + 0.7 * t))
    blue = 128 + 100 * np.cos(2 * np.pi * (4 * y + x + 0.2 * t))
    rgb = np.stack(
        [np.broadcast_to(c, (frames, height, width)) for c in (red, green, blue)],
        axis=-1,
    )
    disc = ((x - 0.3 - 0.2 * np.sin(t)) * width / height) ** 2 + (y - 0.5) ** 2 < 0.03
    rgb = np.where(disc[..., None], np.array([240.0, 30.0, 30.0]), rgb)
    rgb = rgb + np.random.default_rng(0).normal(0, 2, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def encode_before(frames: np.ndarray, path: Path) -> None:
    """The former Mp4Writer: rgb24 frames into stream.encode(), CRF 18, preset medium, automatic threads."""
    height, width = frames.shape[1:3]
    with av.open(
        str(path), mode="w", format="mp4", options={"movflags": "+faststart"}
    ) as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(rgb), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def encode_after(frames: np.ndarray, path: Path, qp: int) -> None:
    with Mp4Writer(path, FPS, frames.shape[2], frames.shape[1], qp=qp) as writer:
        writer.write(frames)


def encode(encoder: str, frames: np.ndarray, path: Path) -> None:
    """`encoder` is `before` or `qp<N>`."""
    if encoder == "before":
        encode_before(frames, path)
    else:
        encode_after(frames, path, int(encoder.removeprefix("qp")))


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The decoded frames as `(f, H, W, 3)` RGB (PyAV's conversion) and `(f, H, W)` luma."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    rgb = np.stack([f.to_ndarray(format="rgb24") for f in frames])
    luma = np.stack([f.to_ndarray(format="yuv420p")[: f.height] for f in frames])
    return rgb, luma


def bt601_luma(rgb: np.ndarray) -> np.ndarray:
    """Float64 limited-range BT.601 luma of uint8 RGB, unrounded: the reference of the luma PSNR."""
    x = rgb.astype(np.float64)
    return 16 + 219 / 255 * (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def repeatable(encoder: str, frames: np.ndarray, tmp: Path, first: np.ndarray) -> bool:
    """`first` (this process's decoded luma), another encode here and three in fresh processes under different
    CPU affinity / OMP settings all decode identically."""
    encode(encoder, frames, tmp / "again.mp4")
    decoded = [first, decode(tmp / "again.mp4")[1]]
    source = tmp / "source.npy"
    np.save(source, frames)
    all_cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    first_cpu = all_cpus.split(",")[0]
    runs = [(first_cpu, {}), (all_cpus, {}), (all_cpus, {"OMP_NUM_THREADS": "1"})]
    for i, (cpus, env) in enumerate(runs):
        out = tmp / f"repeat{i}.mp4"
        command = [
            sys.executable,
            __file__,
            "--worker",
            encoder,
            str(source),
            str(out),
            cpus,
        ]
        subprocess.run(command, check=True, env={**os.environ, **env})
        decoded.append(decode(out)[1])
    return all(np.array_equal(decoded[0], d) for d in decoded[1:])


def row(clip: str, encoder: str, frames: np.ndarray, tmp: Path) -> str:
    out = tmp / f"{encoder}.mp4"
    started = time.perf_counter()
    encode(encoder, frames, out)
    seconds = time.perf_counter() - started
    rgb, luma = decode(out)
    label = (
        "before (crf 18, auto threads)"
        if encoder == "before"
        else f"after {encoder[:2]} {encoder[2:]}"
    )
    return (
        f"| {clip} | {label} | {psnr(rgb, frames):.2f} | {psnr(luma, bt601_luma(frames)):.2f} | "
        f"{out.stat().st_size / len(frames):,.0f} | {len(frames) / seconds:.0f} | "
        f"{'yes' if repeatable(encoder, frames, tmp, luma) else 'NO'} |"
    )


def conversion_row(clip: str, frames: np.ndarray) -> str:
    """`rgb_to_yuv420p` and PyAV's rgb24 conversion back, without an encoder."""
    height = frames.shape[1]
    planes = [
        av.VideoFrame.from_ndarray(rgb_to_yuv420p(f), format="yuv420p") for f in frames
    ]
    rgb = np.stack([p.to_ndarray(format="rgb24") for p in planes])
    luma = np.stack([p.to_ndarray(format="yuv420p")[:height] for p in planes])
    return f"| {clip} | yuv420p only | {psnr(rgb, frames):.2f} | {psnr(luma, bt601_luma(frames)):.2f} | | | |"


def worker(encoder: str, source: str, out: str, cpus: str) -> None:
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    encode(encoder, np.load(source), Path(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--qp", default=str(DEFAULT_QP), help="Mp4Writer quantisers, comma-separated"
    )
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    clips = {
        "demo 96x64": demo_clip(args.frames),
        "synthetic 720x480": synthetic_clip(frames=args.frames),
    }
    encoders = ["before"] + [f"qp{int(q)}" for q in args.qp.split(",")]
    print(
        f"{args.frames} frames at {FPS} fps; {len(os.sched_getaffinity(0))} CPUs; PyAV {av.__version__}"
    )
    print(
        "| clip | encoding | PSNR RGB (dB) | PSNR Y (dB) | bytes/frame | frames/s | repeatable |"
    )
    print("|---|---|---|---|---|---|---|")
    for clip, frames in clips.items():
        print(conversion_row(clip, frames))
        with tempfile.TemporaryDirectory() as tmp:
            for encoder in encoders:
                print(row(clip, encoder, frames, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
