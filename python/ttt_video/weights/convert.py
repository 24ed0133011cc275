"""The diffusers CogVideoX -> TTT-Video conversion (contract 4).

`convert_diffusers` renames the transformer keys by reference-spec 8.5 (1-to-1, no reshapes), adds the
TTT parameters with the constructor initialisation of spec 5.5 drawn from a seed, and writes
`<dst>/transformer/` (config.json + safetensors). It streams: one tensor is read at a time and at most one
output shard plus one layer's TTT parameters are held in memory, so the 5B model (~11 GB in bf16)
converts on a small machine. `vae/`, `text_encoder/` and `tokenizer/` are linked (or copied) as they are.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from ..contracts.bundle import write_bundle_info
from ..models import DiTConfig, TTTVideoDiT, init_ttt_parameters
from ..models.dit import TransformerLayer
from ..models.ttt import TanhGate, TTTBase
from .diffusers_source import (
    DIFFUSERS_INDEX,
    DIFFUSERS_WEIGHTS,
    ConversionError,
    DiffusersTransformer,
    check_source_keys,
    dit_config_from_diffusers,
    first_dtype,
    locate_transformer,
)
from .keys import diffusers_to_ttt_key, ttt_to_diffusers_key
from .shard_writer import ShardWriter

COMPANION_FOLDERS = ("vae", "text_encoder", "tokenizer", "scheduler")
DEFAULT_SHARD_BYTES = 5 * 2**30
# Raw CogVideoX weights expect latents scaled by 0.7; TTT-Video checkpoints were trained on 1.0 (spec 7.4).
COGVIDEOX_LATENT_SCALE = 0.7

__all__ = [
    "COGVIDEOX_LATENT_SCALE",
    "DIFFUSERS_INDEX",
    "DIFFUSERS_WEIGHTS",
    "ConversionError",
    "DiffusersTransformer",
    "convert_diffusers",
    "diffusers_to_ttt_key",
    "dit_config_from_diffusers",
    "locate_transformer",
    "ttt_to_diffusers_key",
]


def _ttt_layer_tensors(config: DiTConfig, num_layers: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """The new TTT and gate parameters of each layer, in order, drawn as `init_ttt_parameters` draws them
    for the whole model from `seed`; one layer is materialised at a time."""
    generator = torch.Generator().manual_seed(seed)
    for index in range(num_layers):
        with torch.device("meta"):
            layer = TransformerLayer(config)
        new_modules = [m for m in layer.modules() if _is_ttt_module(m)]
        for module in new_modules:
            module.to_empty(device="cpu", recurse=True)
        init_ttt_parameters(layer, generator, gating_alpha=config.gating_alpha_init)
        yield {
            f"layers.{index}.{name}": tensor.detach()
            for name, tensor in layer.state_dict().items()
            if tensor.device.type == "cpu"
        }


def _is_ttt_module(module: nn.Module) -> bool:
    return isinstance(module, (TTTBase, TanhGate))


Emit = Callable[..., Any]


def _stream_tensors(source: DiffusersTransformer, config: DiTConfig, names: list[str], seed: int, dtype):
    """(name, tensor) in the target's order: renamed source tensors, and new TTT tensors from `seed`.

    `dtype` casts every tensor (None: keep the source's; new TTT tensors take the source's first dtype).
    """
    new_dtype = dtype or first_dtype(source)
    ttt_layers = _ttt_layer_tensors(config, config.num_layers, seed) if config.has_ttt else iter(())
    pending: dict[str, torch.Tensor] = {}
    with ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for name in names:
            source_key = ttt_to_diffusers_key(name)
            if source_key is None:
                if name not in pending:
                    pending = next(ttt_layers)
                yield name, pending.pop(name).to(new_dtype)
                continue
            file = source.key_files[source_key]
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(str(file), framework="pt"))
            tensor = handles[file].get_tensor(source_key)
            yield name, tensor if dtype is None else tensor.to(dtype)


def convert_diffusers(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    ssm_layer: str = "ttt_mlp",
    seed: int = 0,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    link: bool = True,
    emit: Emit | None = None,
) -> Path:
    """Convert a diffusers CogVideoX transformer into a TTT-Video model bundle at `dst`; returns `dst`.

    `link` symlinks the companion folders (else copies them). `emit(type, **fields)` receives the
    `convert.progress` and `convert.shard` events (contract 3).
    """
    emit = emit or (lambda *args, **kwargs: None)
    source = locate_transformer(src)
    config = dit_config_from_diffusers(source.config, ssm_layer)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in TTTVideoDiT(config).state_dict().items()}
    check_source_keys(source, expected)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    partial = dst / "transformer.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    writer = ShardWriter(partial, max_shard_bytes, lambda shard: emit("convert.shard", **shard))
    total = len(expected)
    for done, (name, tensor) in enumerate(
        _stream_tensors(source, config, list(expected), seed, dtype), start=1
    ):
        writer.add(name, tensor.contiguous())
        if done % 64 == 0 or done == total:
            emit("convert.progress", done=done, total=total)
    writer.close()
    (partial / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    shutil.rmtree(dst / "transformer", ignore_errors=True)
    os.replace(partial, dst / "transformer")
    _place_companions(source.root, dst, link)
    source_name = str(Path(src).resolve())
    write_bundle_info(
        dst, latent_scale=COGVIDEOX_LATENT_SCALE, source=source_name, ssm_layer=ssm_layer, seed=seed
    )
    return dst


def _place_companions(root: Path | None, dst: Path, link: bool) -> None:
    if root is None:
        return
    for name in COMPANION_FOLDERS:
        source, target = root / name, dst / name
        if not source.is_dir() or target.resolve() == source.resolve():
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        if link:
            target.symlink_to(source.resolve(), target_is_directory=True)
        else:
            shutil.copytree(source, target)
