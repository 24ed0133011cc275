"""Memory of the VAE encode in `prepare` as clips grow: windowed (what prepare does) vs whole clip at once.

    python scripts/bench_prepare.py [--bundle DIR] [--size 256x384] [--seconds 3,9,18] [--window 48]

Each measurement runs in a fresh process (this script with --one), which encodes random frames of a clip
of that length at that size with the bundle's VAE encoder and reports its peak resident memory. The clip's
frames themselves (float32, in memory for the whole clip, as in prepare) grow with length; what the
windowed encode adds on top of them should not. Default bundle: a tiny bundle built into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))


def encode_once(
    bundle: str, seconds: int, height: int, width: int, window: int
) -> None:
    """Encodes one random clip (window 0: the whole clip at once) and prints its frame bytes as JSON."""
    import torch
    from ttt_video.vae import CogVideoXVAE

    torch.set_num_threads(1)
    vae = CogVideoXVAE.from_pretrained(
        Path(bundle) / "vae", dtype=torch.float32, device="cpu", parts=("encoder",)
    )
    frames = torch.rand(
        (1, 3, 16 * seconds + 1, height, width),
        generator=torch.Generator().manual_seed(0),
    )
    frames = frames * 2 - 1
    with torch.no_grad():
        if window:
            moments = [m for m in vae.encode_stream(frames, window=window)]
        else:
            moments = [vae.encode(frames, window=frames.shape[2] - 1)]
    assert sum(m.shape[2] for m in moments) == 4 * seconds + 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"frame_bytes": frames.numel() * 4, "peak_bytes": peak}))


def measure(bundle: str, seconds: int, size: tuple[int, int], window: int) -> dict:
    """Peak RSS (MiB) of a fresh process encoding one clip, and its frames' size (MiB)."""
    args = [
        sys.executable,
        __file__,
        "--one",
        str(seconds),
        "--bundle",
        bundle,
        "--window",
        str(window),
    ]
    args += ["--size", f"{size[0]}x{size[1]}"]
    run = subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if run.returncode != 0:
        raise SystemExit(
            f"the encode of {seconds} s failed (exit {run.returncode}):\n{run.stderr}"
        )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    return {
        "peak": report["peak_bytes"] / 2**20,
        "frames": report["frame_bytes"] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", help="a model bundle (default: a tiny one, built here)"
    )
    parser.add_argument("--size", default="256x384", help="HxW of the frames")
    parser.add_argument("--seconds", default="3,9,18")
    parser.add_argument(
        "--window", type=int, default=48, help="frames per window (prepare's default)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    if args.one is not None:
        return encode_once(args.bundle, args.one, height, width, args.window)
    if args.bundle is not None:
        return memory_table(args.bundle, args.seconds, (height, width), args.window)
    from ttt_video.demo.tiny_bundle import make_tiny_bundle

    with tempfile.TemporaryDirectory(prefix="bench-prepare-bundle-") as tmp:
        bundle = str(make_tiny_bundle(Path(tmp) / "tiny"))
        memory_table(bundle, args.seconds, (height, width), args.window)


def memory_table(
    bundle: str, seconds_list: str, size: tuple[int, int], window: int
) -> None:
    """Print the table: per length in `seconds_list` ("3,9,18"), windowed and whole-clip peak memory."""
    height, width = size
    print(
        f"# VAE encode of {bundle}, frames {height}x{width}, float32, one thread; peak RSS of a fresh process"
    )
    print(
        "| seconds | frames MiB | windowed peak MiB | windowed - frames | whole-clip peak MiB | whole - frames |"
    )
    print("|---|---|---|---|---|---|")
    for seconds in (int(s) for s in seconds_list.split(",")):
        windowed = measure(bundle, seconds, size, window)
        whole = measure(bundle, seconds, size, 0)
        f = windowed["frames"]
        print(
            f"| {seconds} | {f:.0f} | {windowed['peak']:.0f} | {windowed['peak'] - f:.0f} "
            f"| {whole['peak']:.0f} | {whole['peak'] - f:.0f} |"
        )


if __name__ == "__main__":
    main()
