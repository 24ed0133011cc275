"""Loading weights straight into the sharded DiT (spec 8.4): no rank ever holds the whole model."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

from ..models import DiTConfig, TTTVideoDiT
from ..weights.dcp import load_dcp_weights
from ..weights.dit_files import checked_files, transformer_folder
from .dims import dims_of
from .plans import parallelize_dit


def load_parallel_dit(
    config: DiTConfig,
    mesh: DeviceMesh,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    safetensors_dir: str | os.PathLike | None = None,
    dcp_dir: str | os.PathLike | None = None,
    shard_parameters: bool | None = None,
    compile: bool = False,
) -> TTTVideoDiT:
    """The DiT laid out on ``mesh`` with its weights, ready for inference; no rank ever holds the whole
    model: build on ``meta`` -> TP -> FSDP -> ``to_empty`` -> each rank reads its own pieces.

    ``safetensors_dir``: a transformer folder (config.json + safetensors; a bundle root also works), read
    slice by slice. ``dcp_dir``: a torch.distributed.checkpoint folder (``{"model": ...}`` or flat), read
    by DCP (a collective: every rank must call). With FSDP the parameters are fp32 masters and ``dtype``
    is the compute dtype; without, they are stored in ``dtype``. The layout is checked against the
    model (``num_heads`` vs ``tp_sharding``) before anything is read.
    """
    dims = dims_of(mesh)
    dims.check_model(config)
    if (safetensors_dir is None) == (dcp_dir is None):
        raise ValueError("load_parallel_dit: pass exactly one of safetensors_dir and dcp_dir")
    shard = dims.shards_parameters if shard_parameters is None else shard_parameters

    model = TTTVideoDiT.from_config(config, device="meta", compile=compile)
    files: list[Path] = []
    if safetensors_dir is not None:
        files, _ = checked_files(model, transformer_folder(safetensors_dir))
    if not shard:
        model = model.to(dtype)
    parallelize_dit(model, mesh, param_dtype=dtype, shard_parameters=shard)
    model.to_empty(device=device)
    if dcp_dir is not None:
        load_dcp_weights(model, dcp_dir)
    else:
        load_safetensors_shards(model, files)
    model.eval().requires_grad_(False)
    return model


@torch.no_grad()
def load_safetensors_shards(model: nn.Module, files: Iterable[str | os.PathLike]) -> None:
    """Copies into every parameter (a DTensor shard or a plain tensor) just its piece of the stored
    tensor, read through safetensors slices; only ``_StridedShard`` layouts (FSDP over TP on the same
    dim) read one whole tensor at a time and cut it. Keys must match (``check_state_dict``)."""
    state = model.state_dict()
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                target = state[name]
                local = target.to_local() if isinstance(target, DTensor) else target
                if local.numel() == 0:
                    continue
                local.copy_(_local_piece(handle.get_slice(name), target))


def _local_piece(stored: Any, target: torch.Tensor) -> torch.Tensor:
    if not isinstance(target, DTensor):
        return stored[:]
    mesh, placements = target.device_mesh, target.placements
    if all(type(p) in (Shard, Replicate) for p in placements):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        shape, offset = compute_local_shape_and_global_offset(target.shape, mesh, placements)
        return stored[tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))]
    whole = stored[:]
    return distribute_tensor(whole, mesh, placements, src_data_rank=None).to_local()
