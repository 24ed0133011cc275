"""CPU threads per process under load: wall time of one tiny 3 s video with 1 or 2 threads, idle or loaded.

    python scripts/bench_threads.py [--bundle DIR] [--steps 10] [--repeats 2] [--load 2]

Each run is a fresh `python -m ttt_video sample` process (the research command line: config file and
flags), so it measures what a user waits for: start, loading, sampling, decoding, writing. "loaded" runs
it while `--load` busy processes (pure Python loops, one core each) compete for the CPUs, as other jobs
on a shared machine do. OMP_WAIT_POLICY=PASSIVE in every run, as the product sets it. The product's
choice (python/ttt_video/lifecycle.py) is cores // processes of the run on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY = "while True:\n    pass\n"


def one_run(bundle: str, steps: int, threads: int, folder: Path) -> float:
    """Seconds of one sampling process with ``threads`` threads."""
    storyboard = folder / "storyboard.jsonl"
    storyboard.write_text(json.dumps([{"text": "A red boat on a lake."}]) + "\n")
    args = [
        sys.executable, "-m", "ttt_video", "sample",
        "--job.config_file", str(ROOT / "configs" / "eval" / "tiny" / "3s.toml"),
        f"--checkpoint.model_dir={bundle}", f"--eval.input_file={storyboard}",
        f"--eval.num_denoising_steps={steps}", "--run-dir", str(folder / f"run-{time.monotonic_ns()}"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    env["PYTHONPATH"] = str(ROOT / "python")
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def timed(bundle: str, steps: int, threads: int, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        return statistics.median(
            one_run(bundle, steps, threads, Path(folder)) for _ in range(repeats)
        )


def with_load(count: int, measure):
    """``measure()`` while ``count`` busy processes run."""
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    try:
        return measure()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", help="a model bundle (default: a tiny one, built here)"
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--load", type=int, default=2, help="busy processes of the loaded case"
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(
        f"# tiny 3 s video, {args.steps} steps, {cores} cores, median of {args.repeats}; seconds per run"
    )
    print(f"| threads | idle | loaded ({args.load} busy processes) |")
    print("|---|---|---|")
    if args.bundle is not None:
        return thread_rows(args.bundle, args)
    with tempfile.TemporaryDirectory(prefix="bench-threads-bundle-") as tmp:
        bundle = Path(tmp) / "tiny"
        subprocess.run(
            [sys.executable, "-m", "ttt_video", "make-tiny-bundle", str(bundle)],
            env={**os.environ, "PYTHONPATH": str(ROOT / "python")},
            check=True,
            capture_output=True,
        )
        thread_rows(str(bundle), args)


def thread_rows(bundle: str, args: argparse.Namespace) -> None:
    """One table row per thread count (1, 2): idle and loaded seconds per run."""
    for threads in (1, 2):
        idle = timed(bundle, args.steps, threads, args.repeats)
        loaded = with_load(
            args.load, lambda t=threads: timed(bundle, args.steps, t, args.repeats)
        )
        print(f"| {threads} | {idle:.1f} | {loaded:.1f} |", flush=True)


if __name__ == "__main__":
    main()
