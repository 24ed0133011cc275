"""The parallel layout: degrees of the four dimensions, the named device mesh, the process group."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from ..contracts.config import InputError, Issue
from ..models import DiTConfig

MESH_DIM_NAMES = ("dp_replicate", "dp_shard", "cfg", "tp")


class ParallelismError(InputError):
    """The parallel layout does not fit the world size or the model: a CONFIG error on ``path``."""

    def __init__(self, message: str, path: str = "parallelism"):
        super().__init__([Issue(path, message)])


@dataclass(frozen=True)
class ParallelDims:
    """Degrees of the four parallel dimensions (``[parallelism]`` of the job config)."""

    dp_replicate: int = 1
    dp_shard: int = 1
    cfg: int = 1
    tp: int = 1

    def __post_init__(self) -> None:
        for name, field in _FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParallelismError(f"must be a positive integer, got {value!r}", f"parallelism.{field}")
        if self.cfg not in (1, 2):
            raise ParallelismError(
                f"parallelism.cfg_parallel must be 1 or 2 (two guidance branches), got {self.cfg}",
                "parallelism.cfg_parallel",
            )

    @classmethod
    def from_config(cls, parallelism: Any) -> ParallelDims:
        """From a ``ParallelismSection`` (or anything with its field names); a ParallelDims passes through."""
        if isinstance(parallelism, ParallelDims):
            return parallelism
        return cls(
            dp_replicate=parallelism.dp_replicate,
            dp_shard=parallelism.dp_sharding,
            cfg=parallelism.cfg_parallel,
            tp=parallelism.tp_sharding,
        )

    @property
    def world_size(self) -> int:
        return self.dp_replicate * self.dp_shard * self.cfg * self.tp

    @property
    def group_size(self) -> int:
        """Ranks that work on one video together: its CFG branches x its tensor-parallel shards."""
        return self.cfg * self.tp

    @property
    def shards_parameters(self) -> bool:
        """FSDP (HSDP with dp_replicate > 1) over the data-parallel ranks; they then run in lockstep."""
        return self.dp_shard > 1

    @property
    def needs_parallel_model(self) -> bool:
        """Whether the DiT must be built through ``load_parallel_dit`` (a plain replica suffices otherwise)."""
        return self.tp > 1 or self.shards_parameters

    def mesh_dims(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Names and sizes of the mesh dims: dp_replicate, cfg and tp when > 1; dp_shard always (spec 8.1)."""
        sizes = {"dp_replicate": self.dp_replicate, "dp_shard": self.dp_shard, "cfg": self.cfg, "tp": self.tp}
        names = tuple(name for name in MESH_DIM_NAMES if name == "dp_shard" or sizes[name] > 1)
        return names, tuple(sizes[name] for name in names)

    def check_world_size(self, world_size: int) -> None:
        if self.world_size != world_size:
            others = self.dp_replicate * self.cfg * self.tp
            hint = (
                f"e.g. parallelism.dp_sharding = {world_size // others}"
                if world_size % others == 0
                else "e.g. launch dp_replicate x dp_sharding x tp_sharding x cfg_parallel processes"
            )
            raise ParallelismError(
                "parallelism.dp_replicate x parallelism.dp_sharding x parallelism.tp_sharding x "
                f"parallelism.cfg_parallel = {self.dp_replicate} x {self.dp_shard} x {self.tp} x {self.cfg} "
                f"= {self.world_size}, but the run has {world_size} processes; change the mesh ({hint}) "
                "or the number of processes so that they agree"
            )

    def check_model(self, config: DiTConfig) -> None:
        """Tensor parallelism shards the heads: ``tp`` must divide ``num_heads``."""
        if config.num_heads % self.tp:
            divisors = [d for d in range(1, config.num_heads + 1) if config.num_heads % d == 0]
            raise ParallelismError(
                f"parallelism.tp_sharding = {self.tp} does not divide the model's num_heads = "
                f"{config.num_heads} (tensor parallelism shards the attention and TTT heads); "
                f"use one of {divisors}",
                "parallelism.tp_sharding",
            )


_FIELDS = {
    "dp_replicate": "dp_replicate",
    "dp_shard": "dp_sharding",
    "cfg": "cfg_parallel",
    "tp": "tp_sharding",
}


def build_mesh(parallelism: Any, world_size: int, device_type: str) -> DeviceMesh:
    """The named device mesh of ``parallelism`` (a ParallelismSection or ParallelDims).

    Validates the product of the degrees against ``world_size`` first (ParallelismError naming the
    fields), then creates the mesh, which needs the default process group (``init_distributed``).
    """
    dims = ParallelDims.from_config(parallelism)
    dims.check_world_size(world_size)
    names, shape = dims.mesh_dims()
    return init_device_mesh(device_type, shape, mesh_dim_names=names)


def dims_of(mesh: DeviceMesh | None) -> ParallelDims:
    """The ParallelDims a mesh from ``build_mesh`` was made of (all ones for ``None``)."""
    if mesh is None:
        return ParallelDims()
    names = mesh.mesh_dim_names or ()
    return ParallelDims(**{name: mesh.size(i) for i, name in enumerate(names)})


def submesh(mesh: DeviceMesh | None, name: str) -> DeviceMesh | None:
    """The 1-D sub-mesh ``name`` if ``mesh`` has that dim, else None."""
    if mesh is None or name not in (mesh.mesh_dim_names or ()):
        return None
    return mesh[name]


def data_parallel_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """``(dp_replicate, dp_shard)`` for HSDP when dp_replicate > 1, else ``dp_shard``."""
    if "dp_replicate" in (mesh.mesh_dim_names or ()):
        return mesh["dp_replicate", "dp_shard"]
    return mesh["dp_shard"]


def init_distributed(cfg: Any, device: torch.device) -> None:
    """Start the default process group from torchrun's environment: NCCL on CUDA (one device per
    process), gloo on CPU; ``cfg.comm.init_timeout_seconds`` bounds the start and every collective."""
    timeout = datetime.timedelta(seconds=cfg.comm.init_timeout_seconds)
    if device.type == "cuda":
        os.environ.setdefault("TORCH_NCCL_AVOID_RECORD_STREAMS", "1")
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
