"""A run's process group and device mesh, for the length of a ``with`` block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .runner import Topology


@contextmanager
def distributed_session(cfg: Any, topology: Topology, device: torch.device) -> Iterator[Any]:
    """Yields the named DeviceMesh of ``cfg.parallelism`` under torchrun, or None for a single process.

    The layout is checked against the world size before any process group exists, so a bad layout fails
    fast on every rank. The process group is destroyed on the way out, whatever happened.
    """
    if topology.world_size == 1:
        yield None
        return
    # imported here: torch.distributed's FSDP and DTensor modules take a while to import
    from .parallel import ParallelDims, build_mesh, init_distributed

    dims = ParallelDims.from_config(cfg.parallelism)
    dims.check_world_size(topology.world_size)
    init_distributed(cfg, device)
    try:
        yield build_mesh(dims, topology.world_size, device.type)
        torch.distributed.barrier()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def max_over_ranks(value: int, device: torch.device) -> int:
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())
