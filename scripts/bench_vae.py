#!/usr/bin/env python
"""Benchmark the VAE on CPU: decode with and without the oneDNN route, and encode memory against clip length.

    OMP_NUM_THREADS=1 python scripts/bench_vae.py                      # defaults below, one thread
    python scripts/bench_vae.py --threads 2 --repeats 5 --lengths 49,145,289,481,1009

1. Decode: the tiny VAE (`tiny_parts.TINY_VAE_CONFIG`, random weights) decodes a 9 s latent
   (1, 16, 37, 8, 12) -> 145 frames of 64x96, windows of 2 latent frames as in sampling. The plain path
   (PyTorch's own kernel choice, mostly slow_conv3d at batch 1) and the oneDNN path run side by side in
   one process on the same weights; wall and CPU seconds are the median of `--repeats` runs after a warm-up.
2. Encode memory: for each clip length, a fresh Python process builds the clip (B=1, 64x96 frames), then
   encodes it while a thread samples the process RSS (psutil) every millisecond. Reported: the peak RSS
   during the encode minus the RSS just before it (the clip is already allocated then), for the default
   window (16 frames, first 17) and for one window over the whole clip (what memory would do without
   windows). The clip itself is listed separately: it is the caller's tensor, not the encoder's memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import ttt_video  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(ROOT / "python"))

MIB = 1024**2


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `fn()` over `repeats` runs, after one warm-up run."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def bench_decode(vae_dir: Path, repeats: int) -> None:
    from ttt_video.vae import CogVideoXVAE

    vae = CogVideoXVAE.from_pretrained(vae_dir, dtype=torch.float32)
    z = torch.randn(1, 16, 37, 8, 12, generator=torch.Generator().manual_seed(0))
    results = {}
    for name, fast in (("plain (PyTorch's choice)", False), ("oneDNN route", True)):
        vae.set_fast_cpu_convolutions(fast)
        frames = vae.decode(z, clamp=False)
        results[name] = (frames, *timed(lambda: vae.decode(z), repeats))
    (plain, plain_wall, plain_cpu), (fast, _, _) = results.values()
    difference = ((fast - plain).abs().max() / plain.abs().max()).item()
    print(
        f"decode: tiny VAE, 9 s latent (1, 16, 37, 8, 12) -> {tuple(plain.shape)}, float32, "
        f"{torch.get_num_threads()} thread(s), median of {repeats}"
    )
    print("| path | wall (s) | CPU (s) | speed-up (wall) | speed-up (CPU) |")
    print("|---|---|---|---|---|")
    for name, (_, wall, cpu) in results.items():
        print(
            f"| {name} | {wall:.2f} | {cpu:.2f} | {plain_wall / wall:.1f}x | {plain_cpu / cpu:.1f}x |"
        )
    print(f"max |oneDNN - plain| / max |plain| = {difference:.1e}\n")


def child_encode(
    vae_dir: Path, frames: int, height: int, width: int, window: int
) -> None:
    """Runs in a fresh process: print the encode's peak RSS above the RSS before it, as JSON."""
    import psutil
    from ttt_video.vae import CogVideoXVAE

    vae = CogVideoXVAE.from_pretrained(vae_dir, dtype=torch.float32, parts=("encoder",))
    clip = (
        torch.rand(
            1, 3, frames, height, width, generator=torch.Generator().manual_seed(0)
        )
        * 2
        - 1
    )
    process = psutil.Process()
    before = process.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    moments = vae.encode(clip, window=window)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    result = {
        "latent": list(moments.shape),
        "clip_mib": clip.numel() * clip.element_size() / MIB,
        "working_mib": (peak[0] - before) / MIB,
        "seconds": seconds,
    }
    print(json.dumps(result))


def encode_in_child(
    vae_dir: Path, frames: int, height: int, width: int, window: int
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--threads",
        str(torch.get_num_threads()),
        "--child",
        str(vae_dir),
    ]
    command += [str(frames), str(height), str(width), str(window)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def bench_encode_memory(
    vae_dir: Path, lengths: list[int], height: int, width: int
) -> None:
    print(
        f"encode: tiny VAE, clips of {height}x{width} frames, float32, oneDNN route; peak RSS during the "
        "encode minus RSS before it (psutil, sampled every 1 ms, fresh process per row)"
    )
    print(
        "| frames | latent frames | clip (MiB) | window 16: working (MiB) | s | one window: working (MiB) | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for frames in lengths:
        windowed = encode_in_child(vae_dir, frames, height, width, 16)
        whole = encode_in_child(vae_dir, frames, height, width, 4 * (frames // 4 + 1))
        print(
            f"| {frames} | {windowed['latent'][2]} | {windowed['clip_mib']:.1f} | "
            f"{windowed['working_mib']:.1f} | {windowed['seconds']:.2f} | {whole['working_mib']:.1f} | "
            f"{whole['seconds']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed decodes per path (default 3)"
    )
    parser.add_argument(
        "--lengths", default="49,145,289,481", help="clip lengths in frames, 4k+1"
    )
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        vae_dir, *numbers = args.child
        child_encode(Path(vae_dir), *(int(n) for n in numbers))
        return

    from ttt_video.demo.tiny_parts import make_tiny_vae

    with tempfile.TemporaryDirectory() as tmp:
        vae_dir = make_tiny_vae(Path(tmp) / "vae", seed=0)
        if not args.skip_decode:
            bench_decode(vae_dir, args.repeats)
        lengths = [int(n) for n in args.lengths.split(",")]
        bench_encode_memory(vae_dir, lengths, args.height, args.width)


if __name__ == "__main__":
    main()
