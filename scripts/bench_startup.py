#!/usr/bin/env python
"""Start-up of a sampling run on a CPU: import times of the heavy modules, and spawn to first step.

    python scripts/bench_startup.py                                  # this checkout
    python scripts/bench_startup.py --before /work/main/python      # side by side with another checkout

Spawn to first step: ``python -m ttt_video sample`` on the tiny bundle (configs/eval/tiny/3s.toml, one
3 s video, 2 steps) as a user runs it; the clock starts just before the process is spawned and the
milestones are the ``time`` fields of its events.jsonl (run.started, the text encoder loaded, the first
step). With ``--before`` the two checkouts run alternately (ABAB...), so load on a shared machine hits both
alike. Import times: each module imported in a fresh process, alone and after torch (what it adds to a
process that already has torch), the median of the repeats.
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
CONFIG = ROOT / "configs" / "eval" / "tiny" / "3s.toml"
STORYBOARD = ROOT / "examples" / "storyboards" / "puppy-3s.jsonl"
IMPORTS = (
    "torch",
    "transformers",
    "from transformers import T5EncoderModel, T5Tokenizer",
    "sentencepiece",
    "safetensors.torch",
    "jsonschema",
    "av",
    "ttt_video.text",
    "ttt_video.pipeline",
)


def env_for(python_dir: Path, threads: int) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(python_dir), OMP_NUM_THREADS=str(threads))


def import_seconds(statement: str, after_torch: bool, env: dict[str, str]) -> float:
    """Seconds that ``statement`` (or ``import statement``) takes in a fresh process."""
    code = statement if statement.startswith("from ") else f"import {statement}"
    program = (
        "import torch\n" if after_torch else ""
    ) + f"import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def import_table(env: dict[str, str], repeats: int) -> None:
    print("| module | import alone (s) | after torch (s) |")
    print("|---|---|---|")
    for statement in IMPORTS:
        alone = statistics.median(
            import_seconds(statement, False, env) for _ in range(repeats)
        )
        after = statistics.median(
            import_seconds(statement, True, env) for _ in range(repeats)
        )
        print(
            f"| `{statement}` | {alone:.3f} | {'-' if statement == 'torch' else f'{after:.3f}'} |",
            flush=True,
        )


def run_once(env: dict[str, str], bundle: Path, work: Path) -> dict[str, float]:
    """One sampling run from spawn to exit; seconds from spawn to its milestones."""
    run = Path(tempfile.mkdtemp(dir=work))
    command = [
        sys.executable,
        "-m",
        "ttt_video",
        "sample",
        "--job.config_file",
        str(CONFIG),
    ]
    command += [f"--checkpoint.model_dir={bundle}", f"--eval.input_file={STORYBOARD}"]
    command += ["--eval.num_denoising_steps=2", "--run-dir", str(run)]
    spawned = time.time()
    subprocess.run(command, env=env, capture_output=True, check=True)
    exited = time.time() - spawned
    events = [
        json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()
    ]

    def at(kind: str, **match) -> float:
        event = next(
            e
            for e in events
            if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
        )
        return event["time"] - spawned

    return {
        "run.started": at("run.started"),
        "text encoder loaded": at("model.loaded", component="text_encoder"),
        "first step": at("step", index=0),
        "exit": exited,
    }


def spawn_table(
    variants: dict[str, dict[str, str]], bundle: Path, repeats: int
) -> None:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as work:
        for _ in range(repeats):
            for (
                name,
                env,
            ) in variants.items():  # alternately, so that load hits every variant alike
                runs[name].append(run_once(env, bundle, Path(work)))
    milestones = list(next(iter(runs.values()))[0])
    print(
        "| checkout | "
        + " | ".join(f"spawn to {m} (s, median / min)" for m in milestones)
        + " |"
    )
    print("|---|" + "---|" * len(milestones))
    for name, results in runs.items():
        cells = [
            f"{statistics.median(r[m] for r in results):.2f} / {min(r[m] for r in results):.2f}"
            for m in milestones
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="the python/ folder of another checkout, run side by side",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs per checkout (imports: 3 at most)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="OMP_NUM_THREADS of the runs"
    )
    parser.add_argument("--skip-imports", action="store_true")
    args = parser.parse_args()
    after = env_for(ROOT / "python", args.threads)
    variants = {"this checkout": after}
    if args.before:
        variants = {
            f"before ({args.before})": env_for(args.before, args.threads),
            **variants,
        }
    load = os.getloadavg()
    print(
        f"# {os.cpu_count()} CPUs, load average {load[0]:.1f}, OMP_NUM_THREADS={args.threads}, {args.repeats} repeats"
    )
    if not args.skip_imports:
        import_table(after, min(args.repeats, 3))
        print()
    with tempfile.TemporaryDirectory(prefix="bench-startup-bundle-") as tmp:
        bundle = Path(tmp) / "tiny"
        subprocess.run(
            [sys.executable, "-m", "ttt_video", "make-tiny-bundle", str(bundle)],
            env=after,
            check=True,
            capture_output=True,
        )
        spawn_table(variants, bundle, args.repeats)


if __name__ == "__main__":
    main()
