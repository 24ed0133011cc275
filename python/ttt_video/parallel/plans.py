"""Tensor parallelism (spec 8.2) and FSDP2 / HSDP (spec 8.3), applied to the DiT from outside."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    parallelize_module,
)

from ..models import DiTConfig, TTTVideoDiT
from .dims import ParallelDims, data_parallel_mesh, dims_of, submesh

# The per-head parameters of a TTT layer (dim 0 = heads): sharded like the heads under TP.
TTT_HEAD_PARAMETERS = (
    "learnable_ttt_lr_weight",
    "learnable_ttt_lr_bias",
    "ttt_norm_weight",
    "ttt_norm_bias",
    "W1",
    "b1",
    "W2",
    "b2",
)


class _SumGradient(torch.autograd.Function):
    """Identity forward; the gradient is summed over ``group`` in backward (the input is replicated and
    each rank's use of it covers only its own heads)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class ShardHeads(ParallelStyle):
    """Shards the module's own per-head parameters (``names``, heads on dim 0) over the TP mesh.

    The module reads them through ``ttt_video.models.ttt.local_tensor``, i.e. it runs on its local heads.
    Its ``learning_rate(x)`` projects the replicated ``x`` onto this rank's heads only, so the gradient
    that flows back to ``x`` from there is summed over the ranks (training; the forward is unchanged).
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        self.names = tuple(names)

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        for name in self.names:
            param = module._parameters.get(name)
            if param is None:
                continue
            sharded = distribute_tensor(
                param.detach(), device_mesh, [Shard(0)], src_data_rank=self.src_data_rank
            )
            module.register_parameter(name, nn.Parameter(sharded, requires_grad=param.requires_grad))
        learning_rate = getattr(module, "learning_rate", None)
        if learning_rate is not None:
            group = device_mesh.get_group()
            module.learning_rate = lambda x: learning_rate(_SumGradient.apply(x, group))
        return module


class ShardTokens(ParallelStyle):
    """Sequence parallelism for a per-token block: the (replicated) input of submodule ``first`` is split
    on ``seq_dim`` so that each rank runs its slice of the tokens with replicated weights, and the output
    of submodule ``last`` is all-gathered back (uneven splits allowed).

    Hooks sit on the submodules because ``TransformerLayer`` calls ``mlp.forward`` directly.
    """

    def __init__(self, first: str, last: str, seq_dim: int = 1) -> None:
        super().__init__()
        self.first, self.last, self.seq_dim = first, last, seq_dim

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        lengths: list[int] = []
        dim = self.seq_dim

        def split(_module: nn.Module, args: tuple) -> tuple:
            x, *rest = args
            lengths.append(x.shape[dim])
            sharded = DTensor.from_local(x, device_mesh, [Replicate()], run_check=False)
            return (sharded.redistribute(device_mesh, [Shard(dim)]).to_local(), *rest)

        def gather(_module: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
            shape = list(out.shape)
            shape[dim] = lengths.pop()
            sharded = DTensor.from_local(
                out,
                device_mesh,
                [Shard(dim)],
                run_check=False,
                shape=torch.Size(shape),
                stride=_contiguous_strides(shape),
            )
            return sharded.redistribute(device_mesh, [Replicate()]).to_local()

        module.get_submodule(self.first).register_forward_pre_hook(split)
        module.get_submodule(self.last).register_forward_hook(gather)
        return module


def _contiguous_strides(shape: list[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def tensor_parallel_plan(config: DiTConfig) -> dict[str, ParallelStyle]:
    """The plan of one transformer layer (spec 8.2, with the adaLN projections sharded as well):

    * attention q/k/v colwise: each rank holds and computes whole heads (q_norm/k_norm are shared by
      all heads and stay replicated); o colwise on the gathered heads, output gathered (spec's choice
      over row-wise, which sums partial products in another order);
    * TTT wq/wk/wv colwise and the per-head parameters (lr weight/bias, ttt_norm, W/b) sharded on heads:
      the scan runs on local heads; post_norm's input gathers the heads; wo colwise, output gathered;
    * adaLN modulation colwise, output gathered (memory only: 2 x 6D x E parameters per layer);
    * MLP: replicated weights, tokens split over the ranks (sequence parallel), output gathered;
    * LayerNorms, gates, text/video bookkeeping: replicated (every rank holds the full residual stream).
    """
    gathered = ColwiseParallel(output_layouts=Replicate())
    plan: dict[str, ParallelStyle] = {
        "pre_seq_adaLN_modulation.1": gathered,
        "pre_mlp_adaLN_modulation.1": gathered,
        "seq_modeling_block.q": ColwiseParallel(),
        "seq_modeling_block.k": ColwiseParallel(),
        "seq_modeling_block.v": ColwiseParallel(),
        "seq_modeling_block.o": ColwiseParallel(input_layouts=Shard(-1), output_layouts=Replicate()),
        "mlp": ShardTokens("layer1", "layer2", seq_dim=1),
    }
    if config.has_ttt:
        ttt = "seq_modeling_block.ssm.ttt"
        plan.update(
            {
                ttt: ShardHeads(TTT_HEAD_PARAMETERS),
                f"{ttt}.wq": ColwiseParallel(),
                f"{ttt}.wk": ColwiseParallel(),
                f"{ttt}.wv": ColwiseParallel(),
                f"{ttt}.post_norm": PrepareModuleInput(
                    input_layouts=(Shard(-1),), desired_input_layouts=(Replicate(),), use_local_output=True
                ),
                f"{ttt}.wo": ColwiseParallel(output_layouts=Replicate()),
            }
        )
    return plan


def apply_tensor_parallel(model: TTTVideoDiT, tp_mesh: DeviceMesh) -> TTTVideoDiT:
    """Shards every transformer layer over ``tp_mesh`` (heads; see ``tensor_parallel_plan``). Apply on
    ``meta`` or on identical replicas, before FSDP. Embeddings and the final layer stay replicated."""
    ParallelDims(tp=tp_mesh.size()).check_model(model.config)
    for layer in model.layers:
        parallelize_module(layer, tp_mesh, tensor_parallel_plan(model.config))
    return model


def apply_fsdp(
    model: TTTVideoDiT,
    dp_mesh: DeviceMesh,
    param_dtype: torch.dtype,
    reduce_dtype: torch.dtype = torch.float32,
    *,
    reshard_after_forward: bool = True,
) -> TTTVideoDiT:
    """``fully_shard`` on each transformer layer, then on the whole DiT; HSDP when ``dp_mesh`` is 2-D
    ``(dp_replicate, dp_shard)``. Parameters stay in their dtype (fp32 masters); compute runs in
    ``param_dtype``.

    Forward inputs are not cast (``cast_forward_inputs=False``): the DiT casts latents and text to its
    compute dtype itself and rounds the timestep to bf16 only as ``faithfulness.timestep_bf16`` says (the
    reference's FSDP cast always rounded it, spec 4.2).

    torch 2.13: over a 1-rank shard group FSDP2 fails under ``torch.inference_mode`` ("Inference tensors
    do not track version counter", fixed upstream by pytorch/pytorch#197327); use ``torch.no_grad`` there.
    The sampler shards only when ``dp_sharding > 1``.
    """
    policy = MixedPrecisionPolicy(
        param_dtype=param_dtype, reduce_dtype=reduce_dtype, cast_forward_inputs=False
    )
    for layer in model.layers:
        fully_shard(layer, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    return model


def parallelize_dit(
    model: TTTVideoDiT,
    mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype,
    shard_parameters: bool | None = None,
) -> TTTVideoDiT:
    """TP over ``mesh["tp"]`` (if present), then FSDP over the data-parallel dims when
    ``shard_parameters`` (default: dp_shard > 1). ``cfg`` and ``dp_replicate`` alone need no change."""
    dims = dims_of(mesh)
    dims.check_model(model.config)
    tp_mesh = submesh(mesh, "tp")
    if tp_mesh is not None:
        apply_tensor_parallel(model, tp_mesh)
    if dims.shards_parameters if shard_parameters is None else shard_parameters:
        apply_fsdp(model, data_parallel_mesh(mesh), param_dtype)
    return model
