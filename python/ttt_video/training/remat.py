"""Activation checkpointing (spec 5.6, ``[remat]``), applied to a built DiT from outside.

The model stays plain: nothing here changes a parameter name or a module of the state dict, so
checkpoints, the optimiser's groups and the parallel plans see the same model with or without remat.

* Layer groups (always, as in the reference): ``model.layers`` is replaced by ``LayerGroups``, the same
  layers under the same names, whose iteration (the DiT's ``for layer in self.layers``) yields one callable
  per group of ``transformer_checkpoint_layer_group_size`` layers that runs them under
  ``torch.utils.checkpoint`` (non-reentrant). Apply it after TP and FSDP, which iterate the layers.
  A group size of 0 (a project setting for small models) iterates the plain layers: nothing is recomputed.
* ``attention``: the block's ``attend`` (a method of the sequence-modelling block, not a module).
* ``forward_ssm`` / ``reverse_ssm``: one direction of the TTT branch (the ``ssm`` module runs both
  directions; the direction is read from the pass plan's ``reverse`` flag).
* ``mlp``: the layer's MLP call; ``seq_modeling_block``: attention and TTT together.
* the TTT scan: ``TTTBase.scan_checkpoint_group_size = remat.scan_checkpoint_group_size`` mini-batches
  (0: None, the scan keeps every mini-batch's activations).

Each flag replaces the instance's bound method with a checkpointed one (``forward`` of a module,
``attend``, ``_mlp_forward``), so the module hooks of FSDP and TP still run. Checkpoints nest.
``shard_transformer_inputs`` is not implemented (``apply_remat`` returns a warning for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..models.ttt import TTTBase


def checkpointed(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` under non-reentrant ``torch.utils.checkpoint`` when autograd records, else as is."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return function(*args, **kwargs)
        return checkpoint(function, *args, use_reentrant=False, **kwargs)

    return run


def checkpointed_directions(forward: Callable[..., Any], *, forward_on: bool, reverse_on: bool):
    """A TTT mixer's ``forward(x, pass_plan)`` checkpointed for the chosen directions only."""
    wrapped = checkpointed(forward)

    def run(x: torch.Tensor, pass_plan: Any) -> torch.Tensor:
        chosen = reverse_on if pass_plan.reverse else forward_on
        return (wrapped if chosen else forward)(x, pass_plan)

    return run


class _LayerGroup:
    """Consecutive transformer layers run as one checkpointed function (called through their modules, so
    that FSDP gathers each layer's parameters again in the recomputation)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.layers = layers

    def __call__(self, x: torch.Tensor, temb: torch.Tensor, plan: Any) -> torch.Tensor:
        def run(x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x, temb, plan)
            return x

        return checkpointed(run)(x, temb)

    def __repr__(self) -> str:
        return f"_LayerGroup({len(self.layers)} layers)"


class LayerGroups(nn.ModuleList):
    """``model.layers`` with the same modules and names; iterating it yields checkpointed layer groups."""

    group_size = 1

    def __iter__(self) -> Iterator[Any]:
        layers = list(self._modules.values())
        if self.group_size == 0:
            yield from layers
            return
        for start in range(0, len(layers), self.group_size):
            yield _LayerGroup(layers[start : start + self.group_size])


def _check_group_size(group_size: int) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 0:
        raise ValueError(
            f"remat.transformer_checkpoint_layer_group_size must be an int >= 0 (0: off), got {group_size!r}"
        )


def checkpoint_layer_groups(model: nn.Module, group_size: int) -> None:
    """Replace ``model.layers`` by ``LayerGroups`` of ``group_size`` layers (see the module docstring)."""
    _check_group_size(group_size)
    groups = LayerGroups(list(model.layers._modules.values()))
    groups.group_size = group_size
    model.layers = groups


def apply_remat(model: nn.Module, remat: Any) -> list[str]:
    """Apply ``remat`` (a RematSection) to a built (and parallelised) DiT; returns warnings to report."""
    if isinstance(model.layers, LayerGroups):
        raise ValueError("apply_remat: remat is already applied to this model (apply it once)")
    _check_group_size(remat.transformer_checkpoint_layer_group_size)
    for module in model.modules():
        if isinstance(module, TTTBase):
            module.scan_checkpoint_group_size = remat.scan_checkpoint_group_size or None
    for layer in model.layers:
        block = layer.seq_modeling_block
        if remat.attention:
            block.attend = checkpointed(block.attend)
        if getattr(block, "has_ttt", False) and (remat.forward_ssm or remat.reverse_ssm):
            block.ssm.forward = checkpointed_directions(
                block.ssm.forward, forward_on=remat.forward_ssm, reverse_on=remat.reverse_ssm
            )
        if remat.mlp:
            layer._mlp_forward = checkpointed(layer._mlp_forward)
        if remat.seq_modeling_block:
            block.forward = checkpointed(block.forward)
    checkpoint_layer_groups(model, remat.transformer_checkpoint_layer_group_size)
    if remat.shard_transformer_inputs:
        return [
            "remat.shard_transformer_inputs is not implemented: each tensor-parallel rank keeps the whole "
            "input of every checkpointed layer group (more memory, the same results)"
        ]
    return []
