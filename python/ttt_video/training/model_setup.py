"""The DiT of a training run (spec 9.2): built on ``meta``, laid out (TP, FSDP2/HSDP), filled with the initial
weights, checkpointed for memory (remat) and ready for the optimiser.

Precision: parameters are fp32 masters. On CUDA the DiT computes in ``parallelism.fsdp_unsharded_dtype``
(bf16): through FSDP2's ``MixedPrecisionPolicy`` (gradients reduced in fp32) when the data-parallel ranks
shard it, else under ``torch.autocast``. On the CPU everything is fp32.

Initial weights: ``checkpoint.init_state_dir`` (a DCP folder: converted weights, ``{"model": ...}`` of a
previous stage's checkpoint, or flat) or the safetensors of ``checkpoint.model_dir``'s ``transformer/``.
Each rank reads only its pieces.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..loading import DTYPES, check_finite_parameters, dit_config_for_job
from ..models import DiTConfig, TTTVideoDiT, build_config
from ..weights.dcp import load_dcp_weights
from ..weights.dit_files import checked_files, read_dit_config, transformer_folder
from ..weights.errors import WeightsMissingError
from .remat import apply_remat


@dataclass
class TrainingModel:
    """The DiT being trained and how it runs: ``mesh`` is None for a single process."""

    model: TTTVideoDiT
    compute_dtype: torch.dtype
    use_autocast: bool  # bf16 compute without FSDP (CUDA)
    device: torch.device
    mesh: Any = None
    tp_group: Any = None  # the tensor-parallel process group when tp_sharding > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.use_autocast:
            return torch.autocast(self.device.type, dtype=self.compute_dtype)
        return contextlib.nullcontext()


def compute_dtype_for(cfg: Any, device: torch.device) -> torch.dtype:
    """``parallelism.fsdp_unsharded_dtype`` on CUDA, float32 on the CPU."""
    return DTYPES[cfg.parallelism.fsdp_unsharded_dtype] if device.type == "cuda" else torch.float32


def cpu_view(cfg: Any, device: torch.device) -> Any:
    """On the CPU the config as it runs there: fsdp_unsharded_dtype float32 (so "auto" quirks are off)."""
    if device.type == "cuda" or cfg.parallelism.fsdp_unsharded_dtype == "float32":
        return cfg
    parallelism = dataclasses.replace(cfg.parallelism, fsdp_unsharded_dtype="float32")
    return dataclasses.replace(cfg, parallelism=parallelism)


def training_dit_config(cfg: Any) -> DiTConfig:
    """The bundle's DiT architecture (or the ``model.size`` preset without a bundle), with the job's TTT
    hyper-parameters and faithfulness switches."""
    bundle = cfg.checkpoint.model_dir
    if bundle is not None and (Path(bundle) / "transformer" / "config.json").is_file():
        base = read_dit_config(transformer_folder(bundle))
    elif cfg.checkpoint.init_state_dir is not None:
        base = build_config(cfg.model.size, ssm_layer=cfg.model.ssm_layer)
    else:
        raise WeightsMissingError(
            "no initial weights: set checkpoint.model_dir to a model bundle (ttt-video convert) or "
            "checkpoint.init_state_dir to a DCP folder (converted weights, or a previous stage's checkpoint)"
        )
    return dit_config_for_job(base, cfg)


def _load_initial_weights(model: TTTVideoDiT, cfg: Any, files: list[Path]) -> str:
    if cfg.checkpoint.init_state_dir is not None:
        source = cfg.checkpoint.init_state_dir
        if not Path(source).is_dir():
            raise WeightsMissingError(f"checkpoint.init_state_dir {source} is not a folder; check the path")
        load_dcp_weights(model, source)
        return str(source)
    from ..parallel import load_safetensors_shards

    load_safetensors_shards(model, files)
    return str(cfg.checkpoint.model_dir)


def build_training_model(cfg: Any, device: torch.device, mesh: Any) -> tuple[TrainingModel, list[str]]:
    """The DiT of ``cfg`` on ``device`` laid out on ``mesh``; returns it and the warnings to report."""
    cfg = cpu_view(cfg, device)
    config = training_dit_config(cfg)
    dtype = compute_dtype_for(cfg, device)
    model = TTTVideoDiT.from_config(config, device="meta")  # fp32 masters
    files: list[Path] = []
    if cfg.checkpoint.init_state_dir is None:
        files, _ = checked_files(model, transformer_folder(cfg.checkpoint.model_dir))
    sharded, tp_group = False, None
    if mesh is not None:
        from ..parallel import dims_of, parallelize_dit, submesh

        dims = dims_of(mesh)
        dims.check_model(config)
        sharded = dims.dp_replicate * dims.dp_shard > 1
        parallelize_dit(model, mesh, param_dtype=dtype, shard_parameters=sharded)
        tp_mesh = submesh(mesh, "tp")
        tp_group = tp_mesh.get_group() if tp_mesh is not None else None
    model.to_empty(device=device)
    source = _load_initial_weights(model, cfg, files)
    check_finite_parameters(model, source)
    model.train()
    warnings = apply_remat(model, cfg.remat)
    use_autocast = dtype != torch.float32 and not sharded
    return TrainingModel(model, dtype, use_autocast, device, mesh, tp_group), warnings
