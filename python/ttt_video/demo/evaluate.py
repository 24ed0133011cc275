"""Evaluating demo models: held-out storyboards -> `ttt-video generate` -> detectors -> a table.

Storyboards come from the world's held-out split (`sample_videos(..., split="heldout")`: every segment
uses a (colour, shape, background) triple that no training clip shows), drawn with a memory-heavy mix so
that enough segments test memory; `BOARD_SETS` names other sets that isolate one question. Each model
generates every storyboard through the real CLI (one run per model), and `score.score_video` reads each
video back with the plain-image detectors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .dataset import read_clip
from .score import ATTRIBUTES, score_video, summarise_scores
from .world import Mix, sample_videos

EVAL_MIX = Mix(cut=0.35, continuation=0.25, memory=0.4)
EVAL_SEGMENTS = 3
EVAL_PRESET = "demo/9s"
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class BoardSet:
    """Which storyboards an evaluation draws: `segments` per video from `split` with `mix`, generated
    with the sampling preset `preset`."""

    description: str
    segments: int = EVAL_SEGMENTS
    split: str = "heldout"
    mix: Mix = EVAL_MIX
    preset: str = EVAL_PRESET


# "heldout" is the evaluation the targets are measured on; the others isolate one question.
BOARD_SETS = {
    "heldout": BoardSet("held-out three-segment storyboards, a memory-heavy mix"),
    "memory": BoardSet(
        "held-out three-segment storyboards, each first, cut, memory",
        mix=Mix(cut=0, continuation=0, memory=1),
    ),
    "single": BoardSet("held-out one-segment storyboards (3 s)", segments=1, preset="demo/3s"),
    "train": BoardSet("three-segment storyboards of the training combinations", split="train"),
}


def board_set(name: str) -> BoardSet:
    """`BOARD_SETS[name]`, or a ValueError naming the choices."""
    if name not in BOARD_SETS:
        raise ValueError(f"unknown board set {name!r}; choose one of {', '.join(BOARD_SETS)}")
    return BOARD_SETS[name]


def board_videos(num_videos: int, seed: int, boards: str = "heldout") -> list:
    """`num_videos` videos (`VideoSpec`) of the board set `boards` (by default, held-out combinations)."""
    chosen = board_set(boards)
    return sample_videos(num_videos, seed, chosen.segments, chosen.mix, split=chosen.split)


def board_storyboards(num_videos: int, seed: int, boards: str = "heldout") -> list[list[dict]]:
    """The storyboards of `board_videos`."""
    return [video.storyboard() for video in board_videos(num_videos, seed, boards)]


def score_vae_reconstructions(
    bundle: str | os.PathLike, num_videos: int, seed: int, boards: str = "heldout"
) -> dict:
    """The ceiling a DiT on `bundle`'s VAE can reach: the videos `evaluate_bundles` draws, rendered
    exactly, encoded and decoded as the pipeline does, scored like generated ones."""
    from ..vae import CogVideoXVAE
    from .vae_training import reconstruct
    from .world import render_video

    vae = CogVideoXVAE.from_pretrained(Path(bundle) / "vae", parts=("encoder", "decoder")).eval()
    videos = board_videos(num_videos, seed, boards)
    scores = [score_video(v.storyboard(), reconstruct(vae, render_video(v))) for v in videos]
    return {"summary": summarise_scores(scores), "videos": scores}


def cli_command(root: Path = REPO_ROOT) -> list[str]:
    """How to run the package's CLI: `node <root>/dist/cli/main.js` (built by `npm run build`)."""
    main = root / "dist" / "cli" / "main.js"
    if not main.is_file():
        raise FileNotFoundError(f"{main} not found; run `npm run build` in {root} first")
    return ["node", str(main)]


def cli_env(root: Path = REPO_ROOT) -> dict[str, str]:
    """The environment for the CLI: this checkout's `python/` first on PYTHONPATH, so that the Python
    processes it starts run this checkout's `ttt_video` whatever the virtualenv has installed."""
    paths = [str(root / "python"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def generate_videos(
    storyboards: Sequence[Sequence[Mapping]],
    bundle: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    ssm_layer: str,
    seed: int = 0,
    preset: str = EVAL_PRESET,
    extra_sets: Sequence[str] = (),
) -> list[Path]:
    """Write the storyboards to `run_dir/storyboards.jsonl`, run `ttt-video generate` with `bundle` into
    `run_dir/run` (resumable) and return the video files, in storyboard order."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    file = run_dir / "storyboards.jsonl"
    file.write_text("".join(json.dumps(list(s)) + "\n" for s in storyboards), encoding="utf-8")
    command = [
        *cli_command(),
        "generate",
        str(file),
        "--model",
        str(bundle),
        "--preset",
        preset,
        "--run-dir",
        str(run_dir / "run"),
        "--seed",
        str(seed),
        "--set",
        f"model.ssm_layer={ssm_layer}",
        *(arg for s in extra_sets for arg in ("--set", s)),
    ]
    subprocess.run(command, check=True, stdout=sys.stderr, env=cli_env())
    return [run_dir / "run" / f"video-{k}" / "video.mp4" for k in range(len(storyboards))]


def bundle_ssm_layer(bundle: str | os.PathLike) -> str:
    """The `ssm_layer` a bundle was trained with, from its `bundle.json` ("ttt_mlp", "none", ...)."""
    file = Path(bundle) / "bundle.json"
    try:
        return str(json.loads(file.read_text(encoding="utf-8"))["ssm_layer"])
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{file}: cannot read the bundle's ssm_layer ({error}); is {bundle} a model bundle?"
        ) from None


def evaluate_bundles(
    bundles: Mapping[str, str | os.PathLike],
    num_videos: int,
    seed: int,
    work: str | os.PathLike,
    boards: str = "heldout",
) -> dict:
    """Generate `num_videos` storyboards of the board set `boards` (seed `seed`) with every bundle (name ->
    folder) into `work/<name>/` and score them: `{name: score_model(...)}`, also in `work/scores.json`."""
    work = Path(work)
    preset = board_set(boards).preset
    storyboards = board_storyboards(num_videos, seed, boards)
    results = {}
    for name, bundle in bundles.items():
        ssm_layer = bundle_ssm_layer(bundle)
        videos = generate_videos(
            storyboards, bundle, work / name, ssm_layer=ssm_layer, seed=seed, preset=preset
        )
        results[name] = score_model(storyboards, videos)
    (work / "scores.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def score_model(storyboards: Sequence[Sequence[Mapping]], videos: Sequence[Path]) -> dict:
    """`{"summary": summarise_scores(...), "videos": [score_video(...) per video]}`."""
    scores = [score_video(board, read_clip(path)) for board, path in zip(storyboards, videos, strict=True)]
    return {"summary": summarise_scores(scores), "videos": scores}


def cut_offsets(scores: Sequence[Mapping]) -> list[int | None]:
    """Per expected cut, the signed distance (frames) from its boundary to the nearest detected cut
    (None when none was detected within 12 frames)."""
    offsets: list[int | None] = []
    for score in scores:
        detected = [d["frame"] for d in score["cuts"]["detected"]]
        for boundary in score["cuts"]["expected_frames"]:
            near = [f - boundary for f in detected if abs(f - boundary) <= 12]
            offsets.append(min(near, key=abs) if near else None)
    return offsets


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_table(results: Mapping[str, Mapping]) -> str:
    """A Markdown table: one row per model (accuracies, cut recall, memory accuracy and counts)."""
    header = ["model", *ATTRIBUTES, "cuts within 3 frames", "spurious cuts", "memory"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        s = result["summary"]
        cuts = f"{_percent(s['cut_recall'])} of {s['expected_cuts']}"
        memory = f"{_percent(s['memory_accuracy'])} of {s['memory_segments']}"
        row = [name, *(_percent(s["accuracy"][a]) for a in ATTRIBUTES), cuts, str(s["spurious_cuts"]), memory]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_cuts(results: Mapping[str, Mapping]) -> str:
    """One line per model: the frame offset of the detected cut at every expected cut (x: none)."""
    lines = []
    for name, result in results.items():
        offsets = cut_offsets(result["videos"])
        text = " ".join("x" if o is None else f"{o:+d}" for o in offsets)
        lines.append(f"{name}: detected cut - boundary, per expected cut: {text}")
    return "\n".join(lines)
