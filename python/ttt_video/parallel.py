"""Parallel layouts of the TTT-Video DiT for sampling (spec 8): device mesh, tensor parallelism,
FSDP2 / HSDP, CFG parallelism and loading weights straight into the sharded model.

The pieces compose like torchtitan's: ``build_mesh`` turns the ``[parallelism]`` section into a named
``DeviceMesh`` (dims ``dp_replicate``, ``dp_shard``, ``cfg``, ``tp``, as present, in that order; rank =
``((r * dp_shard + s) * cfg + c) * tp + t``); ``apply_tensor_parallel`` and ``apply_fsdp`` each take the
model and one sub-mesh; ``load_parallel_dit`` builds on ``meta``, applies both and reads every rank's pieces
of a safetensors folder or a DCP checkpoint; ``CfgParallel`` runs one guidance branch per rank. No global
state: everything a function needs comes in through its arguments. None of the layouts changes the math,
only the order of some reductions (docs/parallelism.md).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    parallelize_module,
)

from .models import DiTConfig, TTTVideoDiT
from .models.dit import check_state_dict, read_safetensors_headers, safetensors_files

MESH_DIM_NAMES = ("dp_replicate", "dp_shard", "cfg", "tp")

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


class ParallelismError(ValueError):
    """The parallel layout does not fit the world size or the model; the message names the fields."""


# ---------------------------------------------------------------------------------------------------
# Layout and mesh
# ---------------------------------------------------------------------------------------------------


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
                raise ParallelismError(f"parallelism.{field} must be a positive integer, got {value!r}")
        if self.cfg not in (1, 2):
            raise ParallelismError(
                f"parallelism.cfg_parallel must be 1 or 2 (two guidance branches), got {self.cfg}"
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
                f"use one of {divisors}"
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


# ---------------------------------------------------------------------------------------------------
# Tensor parallelism (spec 8.2)
# ---------------------------------------------------------------------------------------------------


class ShardHeads(ParallelStyle):
    """Shards the module's own per-head parameters (``names``, heads on dim 0) over the TP mesh.

    The module reads them through ``ttt_video.models.ttt.local_tensor``, i.e. it runs on its local heads.
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


# ---------------------------------------------------------------------------------------------------
# FSDP2 / HSDP (spec 8.3)
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# Loading into the sharded model (spec 8.4)
# ---------------------------------------------------------------------------------------------------


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
        folder = Path(safetensors_dir)
        if not (folder / "config.json").is_file() and (folder / "transformer" / "config.json").is_file():
            folder = folder / "transformer"
        files = safetensors_files(folder)
        headers = read_safetensors_headers(files)
        check_state_dict(model, {name: shape for name, (shape, _) in headers.items()}, source=str(folder))
    if not shard:
        model = model.to(dtype)
    parallelize_dit(model, mesh, param_dtype=dtype, shard_parameters=shard)
    model.to_empty(device=device)
    if dcp_dir is not None:
        from .checkpoints import load_dcp_weights

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


# ---------------------------------------------------------------------------------------------------
# CFG parallelism
# ---------------------------------------------------------------------------------------------------


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


__all__ = [
    "MESH_DIM_NAMES",
    "CfgParallel",
    "ParallelDims",
    "ParallelismError",
    "ShardHeads",
    "ShardTokens",
    "apply_fsdp",
    "apply_tensor_parallel",
    "build_mesh",
    "data_parallel_mesh",
    "dims_of",
    "init_distributed",
    "load_parallel_dit",
    "load_safetensors_shards",
    "parallelize_dit",
    "submesh",
    "tensor_parallel_plan",
]
