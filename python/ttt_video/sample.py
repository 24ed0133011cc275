"""`python -m ttt_video sample --config RESOLVED.toml --input STORYBOARDS.jsonl --run-dir DIR`.

Correct as a plain process and under `torchrun --nproc-per-node N` (gloo on CPU, NCCL on CUDA). Videos
are spread over the data-parallel ranks by global index (`index % dp_world == dp_rank`, spec 2.6);
tensor-parallel and CFG-parallel peers of one data-parallel rank share a video and only the first of
them writes it. Rank 0 emits the run-level events; the writer of each video emits that video's events.

The layout comes from `[parallelism]` (docs/parallelism.md): the ranks form the mesh
`(dp_replicate, dp_sharding, cfg_parallel, tp_sharding)`; with `dp_sharding > 1` the DiT is FSDP-sharded
over the data-parallel ranks, which then sample in lockstep (a rank with fewer videos runs filler
rounds that write nothing).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError, load_config, segment_count
from .events import EventWriter
from .pipeline import (
    ModelConfigError,
    WeightsMissingError,
    check_fits,
    generate_video,
    load_models,
    resolve_device,
)
from .run_dir import CONFIG_NAME, STORYBOARDS_NAME, RunDirectory
from .storyboard import StoryboardError, check_segment_counts


@dataclass(frozen=True)
class Topology:
    rank: int
    world_size: int
    local_rank: int
    group_size: int  # ranks that share one video: tp_sharding x cfg_parallel

    @property
    def dp_rank(self) -> int:
        return self.rank // self.group_size

    @property
    def dp_world(self) -> int:
        return self.world_size // self.group_size

    @property
    def writes(self) -> bool:
        return self.rank % self.group_size == 0

    def owns(self, video_index: int) -> bool:
        return video_index % self.dp_world == self.dp_rank


def topology_from_env(group_size: int = 1) -> Topology:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return Topology(rank, world, local, group_size)


def error_code(error: BaseException) -> str:
    parallel = sys.modules.get(f"{__package__}.parallel")  # loaded if it raised
    if isinstance(error, (ConfigError, ModelConfigError)) or (
        parallel is not None and isinstance(error, parallel.ParallelismError)
    ):
        return "CONFIG"
    if isinstance(error, StoryboardError):
        return "STORYBOARD"
    if isinstance(error, (WeightsMissingError, FileNotFoundError)):
        return "WEIGHTS_MISSING"
    if isinstance(error, torch.OutOfMemoryError):
        return "OUT_OF_MEMORY"
    if isinstance(error, torch.distributed.DistBackendError) or "gloo" in str(error).lower():
        return "DISTRIBUTED"
    return "INTERNAL"


HINTS = {
    "CONFIG": "fix the field named in the message (ttt-video config validate shows all problems)",
    "STORYBOARD": "fix the storyboard at the place named in the message (ttt-video storyboard check)",
    "WEIGHTS_MISSING": "point checkpoint.model_dir at a model bundle (ttt-video convert makes one)",
    "OUT_OF_MEMORY": "use fewer frames, eval.cfg_batch = false, a smaller dtype, or more GPUs (tp_sharding)",
    "DISTRIBUTED": "a process of the run failed or could not be reached; see the logs of every rank",
    "INTERNAL": "this is a bug; the traceback says where",
}


def run_sample(config_path: Path, input_path: Path, run_dir: Path) -> int:
    topo = topology_from_env()
    try:
        run = RunDirectory(run_dir)
    except FileNotFoundError as e:
        print(f"sample: {e}", file=sys.stderr)
        return 2
    events = EventWriter(run.events_file, rank=topo.rank)
    try:
        # Validation happens before any process group exists, so a bad input fails fast on every rank.
        cfg = load_config(config_path, world_size=topo.world_size)
        par = cfg.parallelism
        topo = topology_from_env(par.tp_sharding * par.cfg_parallel)
        return _run(cfg, topo, run, input_path, events)
    except BaseException as error:  # every failure becomes an error event before the process ends
        if isinstance(error, SystemExit) and error.code == 0:
            raise
        code = "CANCELLED" if isinstance(error, KeyboardInterrupt) else error_code(error)
        message = str(error) or type(error).__name__
        if isinstance(error, _Terminated):
            code = "DISTRIBUTED"
            message = (
                "this worker was stopped by its launcher (another rank failed, or the run was cancelled)"
            )
        events.emit(
            "error",
            code=code,
            message=message,
            hint=HINTS.get(code, ""),
            **({"traceback": traceback.format_exc()} if code == "INTERNAL" else {}),
        )
        print(f"[rank {topo.rank}] {code}: {message}", file=sys.stderr, flush=True)
        return 1
    finally:
        events.close()


def _max_over_ranks(value: int, device: torch.device) -> int:
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def _run(cfg, topo: Topology, run: RunDirectory, input_path: Path, events: EventWriter) -> int:
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _on_sigterm)
    videos = run.storyboards(input_path)
    check_segment_counts(videos, segment_count(cfg), input_path)

    device = resolve_device(cfg.job.device, topo.local_rank)
    distributed = topo.world_size > 1
    mesh = None
    if distributed:
        # imported here: torch.distributed's FSDP and DTensor modules take a while to import
        from .parallel import ParallelDims, build_mesh, init_distributed

        dims = ParallelDims.from_config(cfg.parallelism)
        dims.check_world_size(topo.world_size)
        init_distributed(cfg, device)
    try:
        if distributed:
            mesh = build_mesh(dims, topo.world_size, device.type)
        # On a CPU, each of several processes on one machine gets its share of the cores.
        if device.type == "cpu" and distributed and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(
                max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
            )

        def emit_run(type: str, **fields) -> None:
            if topo.rank == 0:
                events.emit(type, **fields)

        def emit_video(type: str, **fields) -> None:
            if topo.writes:
                events.emit(type, **fields)

        emit_run(
            "run.started",
            run_dir=str(run.path),
            world_size=topo.world_size,
            videos=len(videos),
            device=str(device),
        )
        mine = [i for i in range(len(videos)) if topo.owns(i)]
        todo = [i for i in mine if not run.is_complete(i)]
        for i in mine:
            if i not in todo:
                emit_video("prompt.skipped", video=i, reason="complete")
        # Every rank loads when any rank has work: loading a DCP checkpoint is a collective, and so is
        # every forward of a sharded DiT.
        rounds = _max_over_ranks(len(todo), device) if distributed else len(todo)
        if rounds:
            models = load_models(cfg, device, emit_run, mesh=mesh)
            check_fits(models, cfg)
            for i in todo:
                generate_video(models, cfg, videos[i], i, run, emit_video, write=topo.writes)
            if cfg.parallelism.dp_sharding > 1:
                # FSDP ranks sample different videos but gather each layer's weights together: a rank
                # with fewer videos samples a stand-in (same shapes) as often as needed, writing nothing.
                stand_in = todo[-1] if todo else (mine[0] if mine else 0)
                for _ in range(rounds - len(todo)):
                    generate_video(
                        models, cfg, videos[stand_in], stand_in, run, lambda *a, **k: None, write=False
                    )
        if distributed:
            torch.distributed.barrier()
        emit_run("run.finished", videos=len(videos), seconds=round(time.perf_counter() - started, 3))
        return 0
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate the videos of a storyboard file into a run directory")
    p.add_argument("--config", required=True, type=Path, help="the resolved config.toml")
    p.add_argument("--input", type=Path, help=f"storyboards (default: <run-dir>/{STORYBOARDS_NAME})")
    p.add_argument("--run-dir", required=True, type=Path)
    p.set_defaults(run=lambda a: run_sample(a.config, a.input or a.run_dir / STORYBOARDS_NAME, a.run_dir))


__all__ = ["CONFIG_NAME", "Topology", "add_parser", "run_sample", "topology_from_env"]
