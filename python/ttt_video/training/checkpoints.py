"""Training checkpoints: ``<run>/checkpoints/step-<N>/``, torch.distributed.checkpoint (DCP) folders.

Each holds, as tensors only (DCP would read non-tensor values with ``torch.load(weights_only=False)``;
its ``.metadata`` pickle is read through ``weights.dcp.SafeMetadataReader``'s allowlist):

    model.*       the fp32 master weights (``get_model_state_dict``: sharded under FSDP/TP)
    optimizer.*   AdamW's state per parameter (step, exp_avg, exp_avg_sq); the parameter groups
                  (learning rates, weight decay) come from the config when loading
    scheduler.last_epoch, sampler.{position, num_samples, seed}, history.loss (the loss of every step),
    meta.step

and, written last by rank 0 once every rank has finished, ``COMPLETE``: JSON naming the step and the size
of every file. A folder without it, or whose files are missing or of another size (cut), is not a
checkpoint: ``scan_checkpoints`` reports it as broken and it is never loaded.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..contracts.config import ConfigError, Issue
from ..contracts.run_dir import write_atomic
from ..weights.dcp import load_dcp, stored_metadata

MARKER = "COMPLETE"
PREFIX = "step-"
FORMAT_VERSION = 1


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _distributed():
        dist.barrier()


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns that it assumes a single process when there is no process group: that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is .*single process")
        yield


def checkpoint_path(root: Path, step: int) -> Path:
    return root / f"{PREFIX}{step}"


def _step_of(folder: Path) -> int | None:
    suffix = folder.name.removeprefix(PREFIX)
    return int(suffix) if folder.name.startswith(PREFIX) and suffix.isdigit() else None


def verify_checkpoint(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint, or None when it is."""
    marker = folder / MARKER
    if not marker.is_file():
        return f"it has no {MARKER} marker (the run stopped while writing it)"
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        files = recorded["files"]
        step = int(recorded["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MARKER} marker is damaged"
    if step != _step_of(folder):
        return f"its {MARKER} marker names step {step}"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"its file {name} is missing"
        if path.stat().st_size != size:
            return f"its file {name} has {path.stat().st_size} bytes, {size} were written (cut)"
    return None


@dataclass
class CheckpointScan:
    complete: list[tuple[int, Path]] = field(default_factory=list)  # by step, oldest first
    broken: list[tuple[Path, str]] = field(default_factory=list)  # folder, why it is ignored


def scan_checkpoints(root: Path) -> CheckpointScan:
    """The complete and the broken ``step-<N>`` folders under ``root``."""
    scan = CheckpointScan()
    folders = sorted((p for p in root.glob(f"{PREFIX}*") if _step_of(p) is not None), key=_step_of)
    for folder in folders:
        problem = verify_checkpoint(folder)
        if problem is None:
            scan.complete.append((_step_of(folder), folder))
        else:
            scan.broken.append((folder, problem))
    return scan


def write_marker(folder: Path, step: int) -> None:
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != MARKER}
    write_atomic(folder / MARKER, json.dumps({"step": step, "files": files}, indent=1) + "\n")


def prune_checkpoints(root: Path, keep: int) -> list[Path]:
    """Removes the complete checkpoints beyond the ``keep`` newest (0 keeps all); returns them."""
    complete = scan_checkpoints(root).complete
    doomed = [folder for _, folder in complete[: max(0, len(complete) - keep)]] if keep > 0 else []
    for folder in doomed:
        (folder / MARKER).unlink()  # no longer a checkpoint, even if the removal is cut short
        shutil.rmtree(folder)
    return doomed


@dataclass
class TrainingState:
    """What a checkpoint restores besides the model and optimiser."""

    step: int
    losses: torch.Tensor  # (step,) float64, the loss of every step so far
    sampler: dict[str, torch.Tensor]


def _state(model, optimizer_state, scheduler_epoch: int, state: TrainingState) -> dict[str, Any]:
    return {
        "model": model,
        "optimizer": optimizer_state,
        "scheduler": {"last_epoch": torch.tensor(scheduler_epoch, dtype=torch.int64)},
        "sampler": state.sampler,
        "history": {"loss": state.losses},
        "meta": {
            "step": torch.tensor(state.step, dtype=torch.int64),
            "format": torch.tensor(FORMAT_VERSION, dtype=torch.int64),
        },
    }


def save_checkpoint(root: Path, model, optimizer, scheduler, state: TrainingState, rank: int) -> Path:
    """Writes ``root/step-<N>`` (a collective: every rank calls it) and its marker; returns the folder."""
    folder = checkpoint_path(root, state.step)
    if rank == 0:
        if folder.exists():
            shutil.rmtree(folder)  # an unfinished attempt at this step
        folder.mkdir(parents=True)
    _barrier()
    optimizer_state = get_optimizer_state_dict(model, optimizer)["state"]
    full = _state(get_model_state_dict(model), optimizer_state, scheduler.last_epoch, state)
    with _single_process_quiet():
        dcp.save(full, checkpoint_id=str(folder), no_dist=not _distributed())
    _barrier()
    if rank == 0:
        write_marker(folder, state.step)
    _barrier()
    return folder


def _flat_keys(state: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys DCP stores a nested state dict under: the path of every leaf, joined by dots."""
    keys = []
    for key, value in state.items():
        path = f"{prefix}{key}"
        keys += _flat_keys(value, path + ".") if isinstance(value, dict) else [path]
    return keys


def _check_keys(folder: Path, wanted: dict[str, Any]) -> None:
    stored = stored_metadata(folder)
    missing = sorted(key for key in _flat_keys(wanted) if key not in stored)
    if any(key.startswith("optimizer.") for key in missing):
        message = (
            f"the checkpoint {folder} was written with another trainable set (its optimiser state lacks "
            f"{missing[0]}); resume with the training.adapter_method it was written with, or start a new run"
        )
        raise ConfigError([Issue("training.adapter_method", message)])
    if missing:
        raise ConfigError(
            [
                Issue(
                    "run_dir",
                    f"the checkpoint {folder} does not hold this run's model ({missing[0]} is missing)",
                )
            ]
        )


def load_checkpoint(folder: Path, model, optimizer, scheduler, step: int) -> TrainingState:
    """Restores model, optimiser and scheduler from a complete checkpoint (a collective); returns the rest."""
    model_state = get_model_state_dict(model)
    optimizer_full = get_optimizer_state_dict(model, optimizer)  # creates AdamW's state to load into
    sampler = {key: torch.zeros((), dtype=torch.int64) for key in ("position", "num_samples", "seed")}
    state = TrainingState(step, torch.zeros(step, dtype=torch.float64), sampler)
    full = _state(model_state, optimizer_full["state"], 0, state)
    _check_keys(folder, full)
    with _single_process_quiet():
        load_dcp(full, folder, no_dist=not _distributed())
    if int(full["meta"]["step"]) != step:
        raise ConfigError([Issue("run_dir", f"{folder} holds step {int(full['meta']['step'])}, not {step}")])
    set_model_state_dict(model, model_state)
    set_optimizer_state_dict(
        model, optimizer, {"state": full["optimizer"], "param_groups": optimizer_full["param_groups"]}
    )
    restore_scheduler(scheduler, int(full["scheduler"]["last_epoch"]))
    return state


def restore_scheduler(scheduler, last_epoch: int) -> None:
    """Sets the scheduler (and its optimiser's learning rates) to ``last_epoch`` through ``step()``, the
    arithmetic of an uninterrupted run."""
    scheduler.last_epoch = last_epoch - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimizer.step() before lr_scheduler.step()": not the case here
        scheduler.step()
