"""`python -m ttt_video sample`: the videos of a storyboard file into a run directory.

Two ways to call it (run_inputs.py): ``--run-dir DIR`` prepared by the TypeScript SDK, or the research
system's own command line, e.g.

    torchrun --nproc_per_node=4 -m ttt_video sample --job.config_file config.toml \\
        --checkpoint.model_dir=bundle/ --eval.input_file=storyboards.json --eval.num_denoising_steps=50

Correct as a plain process and under torchrun (gloo on CPU, NCCL on CUDA). Videos are spread over the
data-parallel ranks by index (``index % dp_world == dp_rank``, spec 2.6); tensor-parallel and CFG-parallel
peers of one data-parallel rank share a video and only the first of them writes it. With
``dp_sharding > 1`` the DiT is FSDP-sharded over the data-parallel ranks, which then sample in lockstep
(a rank with fewer videos runs stand-in rounds that write nothing).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from .contracts.config import segment_count
from .contracts.run_dir import output_identity
from .contracts.storyboard import Video, check_segment_counts, read_storyboard_file, video_to_json
from .run_inputs import write_inputs_once
from .runner import RunContext, Topology, run_command


@dataclass(frozen=True)
class VideoRanks:
    """Which videos a rank works on, and whether it writes them."""

    topology: Topology
    group_size: int  # ranks that share one video: tp_sharding x cfg_parallel

    @property
    def dp_rank(self) -> int:
        return self.topology.rank // self.group_size

    @property
    def dp_world(self) -> int:
        return self.topology.world_size // self.group_size

    @property
    def writes(self) -> bool:
        return self.topology.rank % self.group_size == 0

    def owns(self, video_index: int) -> bool:
        return video_index % self.dp_world == self.dp_rank


def _storyboards(ctx: RunContext, cfg) -> list[Video]:
    """The run's storyboards.jsonl, written from eval.input_file when the research flags named one."""
    if cfg.eval.input_file is not None:
        videos = read_storyboard_file(cfg.eval.input_file)
        write_inputs_once(ctx.run, "storyboards", [video_to_json(v) for v in videos])
    else:
        videos = ctx.run.storyboards()
    check_segment_counts(videos, segment_count(cfg), ctx.run.file("storyboards"))
    return videos


def _todo(ctx: RunContext, cfg, videos: list[Video], ranks: VideoRanks, emit_video) -> list[int]:
    """This rank's videos that are not finished yet; finished ones are reported as skipped."""
    from .loading import weights_fingerprint

    fingerprint = weights_fingerprint(cfg)
    todo = []
    for i in (i for i in range(len(videos)) if ranks.owns(i)):
        meta = ctx.run.finished(i, output_identity(cfg, videos[i], fingerprint))
        if meta is None:
            todo.append(i)
        else:
            facts = {k: meta[k] for k in ("frames", "fps", "seconds")}
            emit_video("video.skipped", video=i, reason="complete", **facts)
    return todo


def sample_videos(ctx: RunContext, cfg) -> None:
    """The body of a sampling run (inside run_entry, which turns failures into error events)."""
    from .distributed import distributed_session, max_over_ranks
    from .loading import check_fits, load_models, resolve_device
    from .pipeline import check_video_writer, generate_video, use_cuda_graphs
    from .sampling.graphs import cuda_graphs_enabled

    started = time.perf_counter()
    ranks = VideoRanks(ctx.topology, cfg.parallelism.tp_sharding * cfg.parallelism.cfg_parallel)
    videos = _storyboards(ctx, cfg)
    device = resolve_device(cfg.job.device, ctx.topology.local_rank)
    p = cfg.parallelism
    cuda_graphs_enabled(cfg.eval.cuda_graphs, device, p.tp_sharding > 1 or p.dp_sharding > 1)  # CONFIG first
    if ranks.writes:
        check_video_writer()

    def emit_video(type: str, **fields) -> None:
        if ranks.writes:
            ctx.events.emit(type, **fields)

    with distributed_session(cfg, ctx.topology, device) as mesh:
        ctx.emit_run(
            "run.started",
            kind="sample",
            run_dir=str(ctx.run.path),
            world_size=ctx.topology.world_size,
            device=str(device),
            total=len(videos),
        )
        todo = _todo(ctx, cfg, videos, ranks, emit_video)
        # Every rank loads when any rank has work: loading a DCP checkpoint is a collective, and so is
        # every forward of a sharded DiT.
        rounds = max_over_ranks(len(todo), device) if mesh is not None else len(todo)
        if rounds:
            models = load_models(cfg, device, ctx.emit_run, mesh=mesh)
            check_fits(models, cfg)
            use_cuda_graphs(models, cfg)
            for i in todo:
                generate_video(models, cfg, videos[i], i, ctx.run, emit_video, write=ranks.writes)
            # FSDP ranks sample different videos but gather each layer's weights together: a rank with
            # fewer videos samples a stand-in (same shapes) as often as needed, writing nothing.
            stand_in = todo[-1] if todo else 0
            for _ in range(rounds - len(todo) if cfg.parallelism.dp_sharding > 1 else 0):
                generate_video(
                    models, cfg, videos[stand_in], stand_in, ctx.run, lambda *a, **k: None, write=False
                )
    ctx.emit_run("run.finished", seconds=round(time.perf_counter() - started, 3))


def run_sample(args: argparse.Namespace, argv: list[str]) -> int:
    return run_command("sample", args.run_dir, argv, sample_videos)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate the videos of a storyboard file into a run directory",
        description="Either --run-dir DIR (prepared by ttt-video), or the research flags: --job.config_file "
        "FILE and --section.field=value overrides (see docs/running.md).",
    )
    p.add_argument(
        "--run-dir", type=Path, help="the run directory (created when the research flags are used)"
    )
    p.set_defaults(run=run_sample, research_flags=True)
