"""CFG parallelism: the two guidance branches of a denoising step on two ranks."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from .dims import ParallelismError


class CfgParallel:
    """A velocity model for ``guided_denoiser(..., cfg_batch=True)`` on a 2-rank ``cfg`` mesh: of the
    batch ``[uncond, cond]`` this rank runs its own half (cfg rank 0: uncond, 1: cond) and the ranks
    exchange their predictions (all_gather), so both return the whole ``[v_uncond, v_cond]``.

    Each branch runs as a batch of its own, as with ``cfg_batch=False`` in one process (same numbers).
    """

    def __init__(self, model: Any, cfg_mesh: DeviceMesh) -> None:
        if cfg_mesh.size() != 2:
            raise ParallelismError(
                f"parallelism.cfg_parallel must be 2 for CfgParallel, got {cfg_mesh.size()}"
            )
        self.model = model
        self.group = cfg_mesh.get_group()
        self.rank = cfg_mesh.get_local_rank()

    def __call__(self, latents: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if latents.shape[0] % 2:
            raise ValueError(f"CfgParallel expects the batch [uncond, cond], got batch {latents.shape[0]}")
        mine = self.model(
            latents.chunk(2)[self.rank], text.chunk(2)[self.rank], timesteps.chunk(2)[self.rank]
        )
        mine = mine.contiguous()
        parts = [torch.empty_like(mine) for _ in range(2)]
        dist.all_gather(parts, mine, group=self.group)
        return torch.cat(parts)
