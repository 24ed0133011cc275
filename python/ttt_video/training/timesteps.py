"""Stratified training timesteps (spec 9.1): each group of ranks covers its own slice of the 1000-step grid.

With effective world size ``W`` (data-parallel ranks: world size // tp_sharding; tensor-parallel peers
share an effective rank and must draw the same timesteps) take the smallest ``i >= 1`` with ``W % i == 0``
and ``1000 % (W / i) == 0``. The ranks form ``G = W / i`` groups of ``i`` consecutive ranks, and group
``g = rank // i`` draws uniformly from ``[g * 1000 / G, (g + 1) * 1000 / G)``. ``G`` is the largest
divisor of ``W`` that divides 1000, i.e. ``gcd(W, 1000)``; ``W = 64`` gives 8 groups of 125 indices, a
``W`` coprime to 10 gives one group covering the whole grid.
"""

from __future__ import annotations

import torch

from ..sampling.schedule import NUM_TRAIN_TIMESTEPS


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def timestep_groups(world: int) -> tuple[int, int]:
    """``(group_size, num_groups)`` = ``(i, W / i)`` for effective world size ``world``."""
    _check_int("timestep_groups: world (the effective world size)", world, 1)
    group_size = next(
        i for i in range(1, world + 1) if world % i == 0 and NUM_TRAIN_TIMESTEPS % (world // i) == 0
    )
    return group_size, world // group_size


def timestep_range(rank: int, world: int) -> tuple[int, int]:
    """The half-open index range ``[lo, hi)`` that effective rank ``rank`` of ``world`` samples from."""
    group_size, num_groups = timestep_groups(world)
    _check_int("timestep_range: rank (the effective rank)", rank, 0)
    if rank >= world:
        raise ValueError(
            f"timestep_range: rank {rank} is out of range for an effective world size of {world}"
        )
    width = NUM_TRAIN_TIMESTEPS // num_groups
    group = rank // group_size
    return group * width, (group + 1) * width


def sample_timestep_indices(batch: int, rank: int, world: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` indices drawn uniformly from this rank's range, int64 ``(batch,)`` on the generator's device."""
    _check_int("sample_timestep_indices: batch", batch, 1)
    lo, hi = timestep_range(rank, world)
    return torch.randint(lo, hi, (batch,), generator=generator, device=generator.device, dtype=torch.int64)
