"""`python -m ttt_video prepare`: video clips and their annotations -> a training dataset folder.

Two ways to call it (run_inputs.py):

    python -m ttt_video prepare --run-dir RUN --annotations FILE --out DATASET    (RUN made by ttt-video)
    torchrun --nproc-per-node 4 -m ttt_video prepare --job.config_file c.toml \\
        --checkpoint.model_dir=bundle/ --eval.input_file=annotations.jsonl --out DATASET

``--annotations`` defaults to ``eval.input_file`` and ``--out`` to ``training.dataset_path``. Every line is
checked before any work (all problems in one DATA error). Each clip is decoded, resampled and resized
(data/clips.py), encoded by the VAE encoder window by window and its prompts by T5 (data/encode.py), and
written into the folder (data/dataset.py); a re-run skips the clips in the manifest. Under torchrun rank
r takes clips ``r::world`` and needs no process group: each rank appends its own manifest lines.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .contracts.config import ConfigError, Issue
from .contracts.storyboard import segment_prompts
from .data.annotations import Annotation, DataError, read_annotations
from .data.dataset import DatasetFolder
from .data.encode import (
    REFERENCE_WINDOW_FRAMES,
    PrepareModels,
    PrepareSettings,
    check_settings,
    dataset_info,
    encode_clip,
    load_prepare_models,
)
from .runner import RunContext, run_command

Work = list[tuple[int, Annotation]]  # (index in the annotation file's clips, annotation)


def _inputs(cfg, args: argparse.Namespace) -> tuple[Path, Path]:
    """The annotation file and the dataset folder: the flags, else eval.input_file / training.dataset_path."""
    annotations = args.annotations or cfg.eval.input_file
    out = args.out or cfg.training.dataset_path
    issues = []
    if annotations is None:
        issues.append(Issue("eval.input_file", "is needed: the annotation file (--annotations FILE)"))
    if out is None:
        issues.append(
            Issue("training.dataset_path", "is needed: the dataset folder to write (--out DATASET)")
        )
    if issues:
        raise ConfigError(issues)
    return Path(annotations), Path(out)


def _warn_long_prompts(
    ctx: RunContext, annotations: list[Annotation], models: PrepareModels, limit: int
) -> None:
    """A warning per segment prompt that T5 will see cut (more than eval.txt_maxlen tokens)."""
    for annotation in annotations:
        prompts = segment_prompts(annotation.segments).prompts
        for j, count in enumerate(models.text.token_counts(prompts)):
            if count > limit:
                message = (
                    f"the prompt has {count} tokens (</s> included) but eval.txt_maxlen is {limit}: T5 sees "
                    "only the first ones; shorten it or raise eval.txt_maxlen"
                )
                ctx.emit_run("warning", message=message, path=f"line {annotation.line}: segment {j}")


def _same_clip(entry: dict, annotation: Annotation) -> bool:
    prompts = segment_prompts(annotation.segments).prompts
    return entry.get("source") == str(annotation.clip) and entry.get("prompts") == prompts


def _split_work(mine: Work, finished: dict[str, dict], file: Path) -> tuple[Work, Work]:
    """This rank's clips to encode and to skip (in the manifest); a manifest entry made from what an
    annotation line no longer says is refused (ids are line numbers)."""
    todo, skip, issues = [], [], []
    for index, annotation in mine:
        entry = finished.get(annotation.id)
        if entry is None:
            todo.append((index, annotation))
        elif _same_clip(entry, annotation):
            skip.append((index, annotation))
        else:
            message = (
                f"the dataset holds id {annotation.id} made from {entry.get('source')} with other prompts or "
                "clip than this line now gives; write to another --out folder, or delete the line of id "
                f"{annotation.id} from manifest.jsonl to encode it again"
            )
            issues.append(Issue("", message, annotation.line, file=str(file)))
    if issues:
        raise DataError(issues, file)
    return todo, skip


def _encode_all(
    ctx: RunContext,
    todo: Work,
    total: int,
    settings: PrepareSettings,
    models: PrepareModels,
    folder: DatasetFolder,
) -> None:
    """Encodes and writes each clip (after removing what a killed run left of it), then reports it."""
    for index, annotation in todo:
        started = time.perf_counter()
        folder.remove_partial(annotation.id)
        entry, moments, text = encode_clip(annotation, settings, models)
        folder.write_clip(entry, moments, text)
        seconds = round(time.perf_counter() - started, 3)
        ctx.events.emit(
            "prepare.clip",
            clip=index,
            total=total,
            path=str(annotation.clip),
            status="encoded",
            seconds=seconds,
        )


def prepare_dataset(ctx: RunContext, cfg, args: argparse.Namespace) -> None:
    """The body of a prepare run (inside run_entry, which turns failures into error events)."""
    from .loading import resolve_device

    started = time.perf_counter()
    file, out = _inputs(cfg, args)
    settings = PrepareSettings.from_config(cfg, args.window_frames)
    annotations = read_annotations(file)
    topology = ctx.topology
    device = resolve_device(cfg.job.device, topology.local_rank)
    ctx.emit_run(
        "run.started",
        kind="prepare",
        run_dir=str(ctx.run.path),
        world_size=topology.world_size,
        device=str(device),
        total=len(annotations),
    )
    models = load_prepare_models(cfg, device, ctx.emit_run)
    for message in check_settings(settings, cfg, models):
        ctx.emit_run("warning", message=message)
    folder = DatasetFolder(out)
    folder.create()
    folder.check_info(dataset_info(settings, models), write=topology.rank == 0)
    if topology.rank == 0:
        folder.write_null_text(models.text.encode([""], settings.txt_maxlen).cpu())
    _warn_long_prompts(ctx, annotations, models, settings.txt_maxlen)
    mine = list(enumerate(annotations))[topology.rank :: topology.world_size]
    todo, skip = _split_work(mine, folder.read_manifest(), file)
    for index, annotation in skip:
        path = str(annotation.clip)
        ctx.events.emit(
            "prepare.clip", clip=index, total=len(annotations), path=path, status="skipped", seconds=0
        )
    _encode_all(ctx, todo, len(annotations), settings, models, folder)
    ctx.emit_run("run.finished", seconds=round(time.perf_counter() - started, 3))


def run_prepare(args: argparse.Namespace, argv: list[str]) -> int:
    return run_command("prepare", args.run_dir, argv, lambda ctx, cfg: prepare_dataset(ctx, cfg, args))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="encode video clips and their annotations into a training dataset folder",
        description="Either --run-dir DIR (prepared by ttt-video), or the research flags: --job.config_file "
        "FILE and --section.field=value overrides (see docs/training.md, Data).",
    )
    p.add_argument(
        "--run-dir", type=Path, help="the run directory (created when the research flags are used)"
    )
    p.add_argument("--annotations", type=Path, help="the annotation JSONL (default: eval.input_file)")
    p.add_argument("--out", type=Path, help="the dataset folder to write (default: training.dataset_path)")
    p.add_argument(
        "--window-frames",
        type=int,
        default=REFERENCE_WINDOW_FRAMES,
        help=f"frames the VAE encodes at a time, a multiple of 4 (default {REFERENCE_WINDOW_FRAMES}, as the "
        "reference; the first window takes the remainder)",
    )
    p.set_defaults(run=run_prepare, research_flags=True)
