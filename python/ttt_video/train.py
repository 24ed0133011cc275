"""`python -m ttt_video train`: fine-tune the DiT on a prepared dataset, as a run (one stage of training).

Two ways to call it (run_inputs.py): ``--run-dir DIR`` prepared by the TypeScript SDK, or the research
system's command line, e.g.

    torchrun --nproc_per_node=8 -m ttt_video train --job.config_file configs/train/ttt-mlp/3s.toml \\
        --training.dataset_path=DATASET --checkpoint.model_dir=BUNDLE --parallelism.dp_sharding=8

A run directory holds one stage: its checkpoints (``checkpoints/step-<N>/``), ``loss.svg`` and events. A
run started again in the same directory resumes from its latest complete checkpoint. The TypeScript side
runs the stages of staged context extension one after another, each in its own run directory started
from the previous stage's final checkpoint (``checkpoint.init_state_dir``), and names the stage with
``--stage NAME --stage-index I --stages K`` (``stage.started`` / ``stage.finished`` events).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from .runner import RunContext, run_command


@dataclass(frozen=True)
class Stage:
    name: str
    index: int
    stages: int


def _stage_of(args: argparse.Namespace) -> Stage | None:
    if args.stage is None:
        return None
    return Stage(args.stage, args.stage_index, args.stages)


def train_run(ctx: RunContext, cfg, stage: Stage | None = None) -> None:
    """The body of a training run (inside run_entry, which turns failures into error events)."""
    from .distributed import distributed_session
    from .loading import resolve_device
    from .training.loop import Trainer

    started = time.perf_counter()
    device = resolve_device(cfg.job.device, ctx.topology.local_rank)
    with distributed_session(cfg, ctx.topology, device) as mesh:
        ctx.emit_run(
            "run.started",
            kind="train",
            run_dir=str(ctx.run.path),
            world_size=ctx.topology.world_size,
            device=str(device),
            total=cfg.training.steps,
        )
        if stage is not None:
            ctx.emit_run("stage.started", stage=stage.name, index=stage.index, stages=stage.stages)
        trainer = Trainer(ctx, cfg, device, mesh)
        trainer.resume()
        final = trainer.run(started)
        if stage is not None:
            seconds = round(time.perf_counter() - started, 3)
            ctx.emit_run("stage.finished", stage=stage.name, seconds=seconds, checkpoint=str(final))
    ctx.emit_run("run.finished", seconds=round(time.perf_counter() - started, 3))


def run_train(args: argparse.Namespace, argv: list[str]) -> int:
    stage = _stage_of(args)
    return run_command("train", args.run_dir, argv, lambda ctx, cfg: train_run(ctx, cfg, stage))


def _check_stage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    given = [args.stage is not None, args.stage_index is not None, args.stages is not None]
    if any(given) and not all(given):
        parser.error("--stage, --stage-index and --stages go together")
    if args.stage is not None and not 0 <= args.stage_index < args.stages:
        parser.error(f"--stage-index must be in [0, --stages), got {args.stage_index} of {args.stages}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune the DiT on a prepared dataset (one stage) into a run directory",
        description="Either --run-dir DIR (prepared by ttt-video), or the research flags: --job.config_file "
        "FILE and --section.field=value overrides (see docs/training.md).",
    )
    p.add_argument(
        "--run-dir", type=Path, help="the run directory (created when the research flags are used)"
    )
    p.add_argument("--stage", help="the name of this stage (staged training), for the stage events")
    p.add_argument("--stage-index", type=int, help="0-based index of this stage")
    p.add_argument("--stages", type=int, help="number of stages")

    def run(args: argparse.Namespace, argv: list[str]) -> int:
        _check_stage(p, args)
        return run_train(args, argv)

    p.set_defaults(run=run, research_flags=True)
