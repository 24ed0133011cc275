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

from .cfg import CfgParallel
from .dims import (
    MESH_DIM_NAMES,
    ParallelDims,
    ParallelismError,
    build_mesh,
    data_parallel_mesh,
    dims_of,
    init_distributed,
    submesh,
)
from .loading import load_parallel_dit, load_safetensors_shards
from .plans import (
    TTT_HEAD_PARAMETERS,
    ShardHeads,
    ShardTokens,
    apply_fsdp,
    apply_tensor_parallel,
    parallelize_dit,
    tensor_parallel_plan,
)

__all__ = [
    "MESH_DIM_NAMES",
    "TTT_HEAD_PARAMETERS",
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
