"""Gradients of a parallel DiT: the tensor-parallel partial sums and the global norm over mixed layouts.

Under tensor parallelism (``parallel.plans.tensor_parallel_plan``) most replicated parameters see the
whole residual stream on every rank and get whole gradients, but two kinds see only this rank's part:

* the MLP (``ShardTokens``: each rank runs its slice of the tokens through replicated weights);
* ``q_norm``/``k_norm`` of the attention (one LayerNorm shared by all heads, applied to this rank's heads).

Their gradients are partial sums that ``sum_tensor_parallel_partials`` adds up over the TP group
(DTensor parameters, the head-sharded ones, need nothing: autograd reduces them).

The global gradient norm of a model whose gradients mix plain tensors (replicated, counted once) and
DTensors on different meshes (TP shards, FSDP shards, FSDP over TP) is computed per group of equal mesh
and placements: local sums of squares, added up over the sharded mesh dims only.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, Partial, Replicate

from .optim import WRAPPER_PARTS

TP_PARTIAL_PARTS = ("mlp", "q_norm", "k_norm")


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``t`` (under no_grad ``to_local`` returns the DTensor's own local tensor, so
    in-place changes reach the DTensor)."""
    return t.to_local() if isinstance(t, DTensor) else t


def tensor_parallel_partials(model: nn.Module) -> list[nn.Parameter]:
    """The parameters whose gradient is a partial sum under tensor parallelism (see the module docstring)."""
    out = []
    for name, param in model.named_parameters():
        parts = [p for p in name.split(".") if p not in WRAPPER_PARTS]
        if parts[0] == "layers" and any(part in TP_PARTIAL_PARTS for part in parts):
            out.append(param)
    return out


@torch.no_grad()
def sum_tensor_parallel_partials(parameters: Iterable[nn.Parameter], tp_group: dist.ProcessGroup) -> None:
    """All-reduce (sum) the local gradient of every parameter over the tensor-parallel group."""
    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(_local(param.grad), group=tp_group)


@torch.no_grad()
def global_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all of ``grads`` (plain tensors and DTensors mixed), a float32 scalar on every rank."""
    device = _local(grads[0]).device if grads else torch.device("cpu")
    total = torch.zeros((), dtype=torch.float32, device=device)
    groups: dict[tuple, torch.Tensor] = {}
    for grad in grads:
        square = _local(grad).float().square().sum()
        if not isinstance(grad, DTensor):
            total += square
            continue
        # sharded on a mesh dim = not replicated there (Shard, and FSDP-over-TP's _StridedShard, whose
        # is_shard() is False in torch 2.13)
        key = (grad.device_mesh, tuple(not p.is_replicate() for p in grad.placements))
        groups[key] = groups.get(key, torch.zeros_like(total)) + square
    for (mesh, sharded), square in groups.items():  # the same order on every rank (parameter order)
        placements = [Partial() if shard else Replicate() for shard in sharded]
        total += DTensor.from_local(square, mesh, placements, run_check=False).full_tensor()
    return total.sqrt()


@torch.no_grad()
def clip_distributed_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` for gradients that mix plain tensors and DTensors: returns the pre-clip norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = global_grad_norm(grads)
    coefficient = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for grad in grads:
        _local(grad).mul_(coefficient.to(_local(grad).device))
    return norm
