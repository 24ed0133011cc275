#!/usr/bin/env python
"""Evaluate demo models: held-out storyboards of the demo world -> `ttt-video generate` -> detectors.

    npm run build && .venv/bin/python scripts/eval-demo.py                  # models/demo vs models/demo-baseline
    .venv/bin/python scripts/eval-demo.py --model mine=bundles/my-demo --videos 8
    .venv/bin/python scripts/eval-demo.py --vae-only   # exact videos through each VAE: the ceiling
    .venv/bin/python scripts/eval-demo.py --boards memory   # only memory storyboards (see --help)

Prints a Markdown table per model (background, object colour, shape and motion accuracy over segments;
scene cuts detected within 3 frames of their boundary; spurious cuts; memory-segment accuracy), then the
frame offset of the detected cut at every expected cut. Writes `WORK/scores.json` (every detection) and
`WORK/<model>/sheet-<k>.png` contact sheets of the first videos. See docs/demo-world.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from ttt_video.demo import evaluate
from ttt_video.demo.contact_sheet import contact_sheet, write_png
from ttt_video.demo.dataset import read_clip

DEFAULT_MODELS = {
    "ttt-mlp": ROOT / "models" / "demo",
    "baseline": ROOT / "models" / "demo-baseline",
}


def parse_models(values: list[str] | None) -> dict[str, Path]:
    if not values:
        return dict(DEFAULT_MODELS)
    models = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(
                f"--model must be NAME=BUNDLE (e.g. mine=bundles/demo), got {value!r}"
            )
        models[name] = Path(path).resolve()
    return models


def write_sheets(results: dict, work: Path, count: int) -> None:
    for name, result in results.items():
        for k, video in enumerate(result["videos"][:count]):
            frames = read_clip(work / name / "run" / f"video-{k}" / "video.mp4")
            write_png(
                work / name / f"sheet-{k}.png",
                contact_sheet(frames, len(video["segments"])),
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="NAME=BUNDLE (repeatable)")
    parser.add_argument("--videos", type=int, default=32, help="storyboards per model")
    parser.add_argument(
        "--boards",
        choices=list(evaluate.BOARD_SETS),
        default="heldout",
        help="which storyboards: "
        + "; ".join(f"{k}: {v.description}" for k, v in evaluate.BOARD_SETS.items()),
    )
    parser.add_argument("--seed", type=int, default=2, help="storyboards and noise")
    parser.add_argument("--work", type=Path, default=ROOT / "output" / "eval-demo")
    parser.add_argument(
        "--sheets", type=int, default=3, help="contact sheets per model"
    )
    parser.add_argument(
        "--vae-only",
        action="store_true",
        help="score each model's VAE reconstructions of the exact videos instead",
    )
    args = parser.parse_args(argv)
    models = parse_models(args.model)
    for name, bundle in models.items():
        if not (bundle / "bundle.json").is_file():
            raise SystemExit(
                f"model {name}: {bundle} is not a model bundle (no bundle.json)"
            )
    started = time.perf_counter()
    if args.vae_only:
        results = {
            f"{name} VAE": evaluate.score_vae_reconstructions(
                b, args.videos, args.seed, args.boards
            )
            for name, b in models.items()
        }
    else:
        results = evaluate.evaluate_bundles(
            models, args.videos, args.seed, args.work, args.boards
        )
        write_sheets(results, args.work, args.sheets)
    print(evaluate.format_table(results) + "\n\n" + evaluate.format_cuts(results))
    print(
        f"\n{args.videos} videos per model in {time.perf_counter() - started:.0f} s; details in {args.work}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
