"""What every run entry point shares (sample, prepare, train, convert): its place in the process group,
its events, and turning every failure into one typed ``error`` event before the process ends.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .contracts.config import InputError
from .contracts.events import EventWriter
from .contracts.run_dir import RunDirectory

HINTS = {
    "CONFIG": "fix the field named in the message (ttt-video config validate shows all problems)",
    "STORYBOARD": "fix the storyboard at the place named in the message (ttt-video storyboard check)",
    "DATA": "fix the annotation lines or clips named in the message",
    "WEIGHTS_MISSING": "point checkpoint.model_dir at a model bundle (ttt-video convert makes one)",
    "WEIGHTS": "the named weight file is damaged or of another model; convert or download it again",
    "OUT_OF_MEMORY": "use fewer frames, eval.cfg_batch = false, a smaller dtype, or more GPUs (tp_sharding)",
    "NON_FINITE": "the model produced NaN or infinite values; check the weights and the settings named",
    "DISTRIBUTED": "a process of the run failed or could not be reached; see the logs of every rank",
    "CANCELLED": "the run was stopped; run it again with the same run directory to resume",
    "INTERNAL": "this is a bug; the traceback says where",
}


class Terminated(Exception):  # noqa: N818 (a signal, not an error of the program)
    """SIGTERM arrived: the launcher (or torchrun, when another rank failed) stopped this process."""


class NonFiniteError(ValueError):
    """NaN or infinite values where numbers must be finite (weights, latents, a loss)."""

    code = "NON_FINITE"


@dataclass(frozen=True)
class Topology:
    """This process's place in the run: torchrun's RANK, WORLD_SIZE, LOCAL_RANK (all 0/1 when alone)."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls) -> Topology:
        env = os.environ
        return cls(
            int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))
        )


@dataclass
class RunContext:
    run: RunDirectory
    events: EventWriter
    topology: Topology

    def emit_run(self, type: str, **fields: Any) -> None:
        """A run-level event: written by rank 0 only."""
        if self.topology.rank == 0:
            self.events.emit(type, **fields)


def _out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def error_code(error: BaseException) -> str:
    """The contract's error code of an exception (its ``code`` attribute, or what kind of failure it is)."""
    code = getattr(error, "code", None)
    if isinstance(code, str) and code in HINTS:
        return code
    if isinstance(error, KeyboardInterrupt):
        return "CANCELLED"
    if isinstance(error, Terminated):
        return "DISTRIBUTED" if Topology.from_env().world_size > 1 else "CANCELLED"
    if _out_of_memory(error):
        return "OUT_OF_MEMORY"
    torch = sys.modules.get("torch")
    dist_error = getattr(getattr(torch, "distributed", None), "DistBackendError", ())
    if isinstance(error, dist_error) or "gloo" in str(error).lower():
        return "DISTRIBUTED"
    return "INTERNAL"


def error_fields(error: BaseException) -> dict[str, Any]:
    """The fields of the ``error`` event of ``error``: code, message, hint, issues, traceback."""
    code = error_code(error)
    message = str(error) or type(error).__name__
    if isinstance(error, Terminated):
        message = (
            "this worker was stopped by its launcher (another rank failed, or the run was cancelled)"
            if code == "DISTRIBUTED"
            else "the run was cancelled (SIGTERM)"
        )
    fields: dict[str, Any] = {"code": code, "message": message, "hint": HINTS[code]}
    if isinstance(error, InputError):
        fields["issues"] = [i.to_dict() for i in error.issues]
    if code == "INTERNAL":
        fields["traceback"] = "".join(traceback.format_exception(error))
    return fields


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def run_entry(run: RunDirectory, body: Callable[[RunContext], None]) -> int:
    """Runs ``body`` with the run's events open; any failure becomes an ``error`` event (any rank may
    write one) and exit code 1."""
    topology = Topology.from_env()
    events = EventWriter(run.events_file, rank=topology.rank)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        body(RunContext(run, events, topology))
        return 0
    except BaseException as error:  # every failure becomes an error event before the process ends
        if isinstance(error, SystemExit) and error.code in (0, None):
            raise
        fields = error_fields(error)
        events.emit("error", **fields)
        print(f"[rank {topology.rank}] {fields['code']}: {fields['message']}", file=sys.stderr, flush=True)
        return 1
    finally:
        events.close()


def run_command(kind: str, run_dir, argv: list[str], body: Callable[[RunContext, Any], None]) -> int:
    """An entry point's whole life: resolve its config and run directory (run_inputs.resolve_run), then
    ``body(ctx, cfg)``. With a run directory given, even a bad config becomes an error event in it; without
    one (research flags, no --run-dir) such an error is printed, as there is nowhere else to put it."""
    from .run_inputs import resolve_run

    if run_dir is not None and RunDirectory.exists(run_dir):

        def resolve_and_run(ctx: RunContext) -> None:
            cfg, run = resolve_run(kind, run_dir, argv, ctx.topology.world_size)
            body(RunContext(run, ctx.events, ctx.topology), cfg)

        return run_entry(RunDirectory(run_dir), resolve_and_run)
    try:
        cfg, run = resolve_run(kind, run_dir, argv, Topology.from_env().world_size)
    except InputError as error:
        print(f"{kind}: {error}", file=sys.stderr)
        return 2
    return run_entry(run, lambda ctx: body(ctx, cfg))
