"""torch.distributed.checkpoint (DCP) folders: the research system's checkpoint format (spec 8.4, 8.5)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError, WeightsMissingError


# ---------------------------------------------------------------------------------------------------
def load_dcp_weights(model: nn.Module, checkpoint_dir: str | os.PathLike) -> None:
    """Loads a DCP checkpoint (spec 8.4): `{"model": state}` of a training run, or a flat state dict.

    Keys may carry the reference's `dit.` prefix. Works without a process group (single process) and
    inside one (each rank reads what it needs).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    folder = Path(checkpoint_dir)
    if not (folder / ".metadata").is_file():
        raise WeightsMissingError(
            f"{folder} is not a torch.distributed.checkpoint folder (no .metadata file); check checkpoint.init_state_dir"
        )
    reader = FileSystemReader(str(folder))
    stored = reader.read_metadata().state_dict_metadata
    own = model.state_dict()
    for prefix in ("model.dit.", "model.", "dit.", ""):
        if not all(f"{prefix}{name}" in stored for name in own):
            continue
        misshapen = [
            f"{name}: {tuple(stored[prefix + name].size)} stored, {tuple(t.shape)} expected"
            for name, t in own.items()
            if tuple(getattr(stored[prefix + name], "size", t.shape)) != tuple(t.shape)
        ]
        if misshapen:
            raise WeightsError(
                f"{folder}: the checkpoint does not hold this model's weights; misshapen: {'; '.join(misshapen[:10])} "
                "(is it a checkpoint of another ssm_layer or size?)"
            )
        state = {f"{prefix}{name}": tensor for name, tensor in own.items()}
        dcp.load(state, checkpoint_id=str(folder), no_dist=not _distributed())
        model.load_state_dict({name: state[f"{prefix}{name}"] for name in own}, strict=True)
        return
    sample = sorted(stored)[:5]
    missing = sorted(name for name in own if name not in stored and f"dit.{name}" not in stored)[:10]
    raise WeightsError(
        f"{folder}: the checkpoint does not hold this model's weights (tried flat, 'dit.', 'model.' and "
        f"'model.dit.' prefixes). Missing for example: {missing}; the checkpoint has e.g. {sample}"
    )


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
