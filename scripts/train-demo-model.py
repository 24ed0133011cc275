#!/usr/bin/env python
"""Rebuild the demo model from a seed: world data -> VAE -> T5 -> bundle -> `ttt-video prepare` ->
`ttt-video train` of a local-attention model on 3 s clips -> TTT layers added to it (TTT-MLP) or not
(the baseline) -> `ttt-video train` of both on 9 s clips (same data and steps) -> export -> evaluation ->
the shipped bundles and their manifests.

    npm run build && OMP_NUM_THREADS=1 .venv/bin/python scripts/train-demo-model.py --work /tmp/demo-work
    ... --quick                  # a smoke run: few steps everywhere (minutes), nothing shipped unless --out

Every stage writes into WORK and is skipped when its output exists, so a killed run continues where it
stopped. `--out` (default models/demo; the baseline goes next to it as models/demo-baseline) receives
the exported TTT-MLP bundle with `manifest.json`: sha256 of every file, the command, date, machine,
stage timings, the VAE's PSNR and the evaluation table of both models. See docs/demo-world.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from ttt_video.demo import evaluate, manifest, recipe
from ttt_video.demo.model_bundle import (
    initial_dit,
    with_ttt_layers,
    write_initial_bundle,
)
from ttt_video.demo.vae_training import VAETraining
from ttt_video.models import TTTVideoDiT

# name -> model.ssm_layer. "pretrain" is the local-attention model of the 3 s stage that both compared
# models start from, as TTT-Video starts from CogVideoX
MODELS = {"pretrain": "none", "ttt-mlp": "ttt_mlp", "baseline": "none"}
COMPARED = ("ttt-mlp", "baseline")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Stages:
    """Runs the stages in order, timing each and keeping `WORK/state.json` (timings and reports)."""

    def __init__(self, work: Path, stop_after: str | None = None):
        self.work = work
        self.stop_after = stop_after
        self.file = work / "state.json"
        self.state = (
            json.loads(self.file.read_text()) if self.file.exists() else {"stages": {}}
        )

    def run(self, name: str, done: Path, body) -> dict:
        entry = self.state["stages"].get(name)
        if entry is not None and done.exists():
            log(f"{name}: done before ({entry['seconds']} s), skipped")
            return entry.get("report", {})
        log(f"{name}: started")
        started = time.perf_counter()
        report = body()
        report = report if isinstance(report, dict) else {}
        seconds = round(time.perf_counter() - started, 1)
        self.state["stages"][name] = {"seconds": seconds, "report": report}
        self.file.write_text(json.dumps(self.state, indent=2) + "\n")
        log(f"{name}: {seconds} s")
        if name == self.stop_after:
            log(f"stopping after {name} (--stop-after)")
            raise SystemExit(0)
        return report


def cli(*args: str) -> None:
    command = [*evaluate.cli_command(ROOT), *args]
    log("$ ttt-video " + " ".join(args))
    subprocess.run(command, check=True, stdout=sys.stderr, env=evaluate.cli_env(ROOT))


def train_model(
    work: Path, name: str, stage: str, quick_steps: int | None, seed: int, procs: int
) -> None:
    """`ttt-video train` of `init-NAME` on the `stage` preset (3s or 9s), exported to `bundle-NAME`."""
    ssm = MODELS[name]
    sets = [
        "--set",
        f"model.ssm_layer={ssm}",
        "--set",
        f"parallelism.dp_sharding={procs}",
    ]
    sets += ["--gpus", str(procs)]
    if quick_steps is not None:
        sets += [
            "--set",
            f"training.steps={quick_steps}",
            "--set",
            "training.warmup_steps=1",
        ]
    cli(
        "train",
        "--data",
        str(work / "dataset"),
        "--preset",
        "demo",
        "--stages",
        stage,
        "--model",
        str(work / f"init-{name}"),
        "--run-dir",
        str(work / "runs" / name),
        "--seed",
        str(seed),
        *sets,
        "--export",
        str(work / f"bundle-{name}"),
    )


def write_compared_bundles(work: Path, seed: int) -> None:
    """`init-ttt-mlp` (the pretrained model with TTT layers added) and `init-baseline` (it as it is)."""
    bundle = work / "bundle-pretrain"
    pretrained = TTTVideoDiT.from_pretrained(bundle)
    write_initial_bundle(
        work / "init-ttt-mlp", bundle, with_ttt_layers(pretrained, seed), seed
    )
    write_initial_bundle(work / "init-baseline", bundle, pretrained, seed)


def evaluate_models(work: Path, settings: recipe.Recipe) -> dict:
    bundles = {name: work / f"bundle-{name}" for name in COMPARED}
    seed = settings.seed + 2
    results = evaluate.evaluate_bundles(
        bundles, settings.eval_videos, seed, work / "eval"
    )
    table = evaluate.format_table(results)
    print(table + "\n\n" + evaluate.format_cuts(results), flush=True)
    return {name: r["summary"] for name, r in results.items()} | {"table": table}


def ship(work: Path, out: Path, state: dict, command: list[str]) -> None:
    """Copy the exported bundles (links resolved) to `out` and `out`-baseline with their manifests."""
    for name, target in (
        ("ttt-mlp", out),
        ("baseline", out.with_name(out.name + "-baseline")),
    ):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(work / f"bundle-{name}", target, symlinks=False)
        info = {
            "model": name,
            "ssm_layer": MODELS[name],
            "command": " ".join(command),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(),
            "stages": {k: v["seconds"] for k, v in state["stages"].items()},
            "vae": state["stages"]["vae"]["report"],
            "evaluation": state["stages"]["evaluate"]["report"],
        }
        manifest.write_manifest(target, info)
        log(f"shipped {target} ({manifest.folder_bytes(target) / 1e6:.2f} MB)")


def machine() -> str:
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'cpu'}), OMP_NUM_THREADS={threads}"


def quick_recipe(seed: int) -> recipe.Recipe:
    """A smoke run's settings: a few clips and steps everywhere."""
    return replace(
        recipe.Recipe(seed=seed), clips_3s=24, clips_9s=24, vae_clips=16, psnr_clips=2, eval_videos=4,
        vae=(VAETraining(steps=10, batch=2, frames=1), VAETraining(steps=5, batch=1, crop=(32, 48))),
    )  # fmt: skip


def prepare_dataset(stages: Stages, work: Path, procs: int) -> None:
    """`ttt-video prepare` of the world data with the initial bundle's VAE and T5."""
    stages.run(
        "prepare",
        work / "dataset" / "dataset.json",
        lambda: cli(
            "prepare",
            str(work / "data" / "annotations.jsonl"),
            "--out",
            str(work / "dataset"),
            "--model",
            str(work / "init-pretrain"),
            "--preset",
            "demo/3s",
            "--gpus",
            str(procs),
        ),
    )


def build(args: argparse.Namespace) -> None:
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    settings = quick_recipe(args.seed) if args.quick else recipe.Recipe(seed=args.seed)
    stages = Stages(work, args.stop_after)
    parts = work / "parts"
    stages.run(
        "data",
        work / "data" / "annotations.jsonl",
        lambda: recipe.write_world_data(settings, work / "data"),
    )
    stages.run(
        "vae", parts / "vae", lambda: recipe.build_vae(settings, parts / "vae", log)
    )
    stages.run(
        "text", parts / "tokenizer", lambda: recipe.build_text_encoder(settings, parts)
    )
    stages.run(
        "init-pretrain",
        work / "init-pretrain",
        lambda: (
            write_initial_bundle(
                work / "init-pretrain",
                parts,
                initial_dit("none", settings.seed),
                settings.seed,
            )
            and None
        ),
    )
    prepare_dataset(stages, work, args.procs)
    steps = 2 if args.quick else None
    train = functools.partial(
        train_model, work, seed=settings.seed, quick_steps=steps, procs=args.procs
    )
    stages.run(
        "train-pretrain", work / "bundle-pretrain", lambda: train("pretrain", "3s")
    )
    stages.run(
        "init-compared",
        work / "init-baseline",
        lambda: write_compared_bundles(work, settings.seed),
    )
    for name in COMPARED:
        stages.run(
            f"train-{name}", work / f"bundle-{name}", lambda n=name: train(n, "9s")
        )
    stages.run(
        "evaluate",
        work / "eval" / "scores.json",
        lambda: evaluate_models(work, settings),
    )
    if args.out is not None:
        ship(work, args.out.resolve(), stages.state, [sys.argv[0], *sys.argv[1:]])
    total = sum(v["seconds"] for v in stages.state["stages"].values())
    log(f"total {total:.0f} s ({total / 60:.1f} min) over the stages")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work", type=Path, required=True, help="working folder (resumable)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the one seed of everything (default 0)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to ship the TTT-MLP bundle (e.g. models/demo)",
    )
    parser.add_argument(
        "--stop-after",
        default=None,
        help="end after this stage (data, vae, text, prepare, train-pretrain, train-ttt-mlp, ...)",
    )
    parser.add_argument(
        "--procs",
        type=int,
        default=2,
        help="CPU processes for prepare and train (default 2: one per core)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run with a few steps in every stage",
    )
    build(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
