"""A diffusers CogVideoX transformer on disk (snapshot or transformer/ folder), read without loading it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..models import DiTConfig
from .errors import WeightsMissingError
from .keys import diffusers_to_ttt_key, ttt_to_diffusers_key
from .safetensors_io import read_header, read_json, shard_files

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_INDEX = "diffusion_pytorch_model.safetensors.index.json"


class ConversionError(ValueError):
    """A source that cannot be converted; the message lists the offending keys or files."""

    code = "WEIGHTS"


@dataclass(frozen=True)
class DiffusersTransformer:
    root: Path | None  # the snapshot folder holding vae/, text_encoder/, ... (None for a bare transformer/)
    folder: Path  # the transformer folder
    config: dict[str, Any]
    key_files: dict[str, Path]  # tensor name -> the safetensors file holding it


def locate_transformer(src: str | os.PathLike) -> DiffusersTransformer:
    """Reads a diffusers CogVideoX snapshot (or its transformer/ folder); checks every shard is there."""
    src = Path(src)
    if not src.exists():
        raise WeightsMissingError(
            f"{src} does not exist; pass a CogVideoX snapshot folder or its transformer/ folder"
        )
    folder, root = (src / "transformer", src) if (src / "transformer").is_dir() else (src, None)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConversionError(
            f"{folder} has no config.json: expected a diffusers CogVideoXTransformer3DModel folder "
            "(transformer/ of the CogVideoX-5b snapshot)"
        )
    config = read_json(config_file, "a diffusers transformer config.json")
    files = shard_files(folder, DIFFUSERS_WEIGHTS, DIFFUSERS_INDEX)
    key_files = {name: file for file in files for name in read_header(file) if name != "__metadata__"}
    return DiffusersTransformer(root, folder, config, key_files)


def dit_config_from_diffusers(config: dict[str, Any], ssm_layer: str, **overrides: Any) -> DiTConfig:
    """The DiT architecture of a diffusers CogVideoXTransformer3DModel config.json."""
    missing = [
        k
        for k in ("num_attention_heads", "attention_head_dim", "num_layers", "text_embed_dim")
        if k not in config
    ]
    if missing:
        raise ConversionError(f"the transformer config.json lacks {missing}; is it a CogVideoX transformer?")
    if config.get("use_rotary_positional_embeddings") is False:
        raise ConversionError(
            "this CogVideoX transformer uses absolute position embeddings (CogVideoX-2B); TTT-Video builds on "
            "the 5B model, whose config has use_rotary_positional_embeddings = true"
        )
    if config.get("ofs_embed_dim") or config.get("patch_size_t"):
        raise ConversionError(
            "CogVideoX 1.5 transformers (ofs embedding / temporal patches) are not supported"
        )
    values: dict[str, Any] = {
        "model_dim": config["num_attention_heads"] * config["attention_head_dim"],
        "num_heads": config["num_attention_heads"],
        "num_layers": config["num_layers"],
        "text_dim": config["text_embed_dim"],
        "time_embed_dim": config.get("time_embed_dim", 512),
        "patch_size": config.get("patch_size", 2),
        "in_channels": config.get("in_channels", 16),
        "out_channels": config.get("out_channels", 16),
        "ssm_layer": ssm_layer,
    }
    if ssm_layer == "ttt_linear":
        values.update(ttt_base_lr=1.0, mini_batch_size=16)
    elif ssm_layer == "ttt_mlp":
        values.update(ttt_base_lr=0.1, mini_batch_size=64)
    values.update(overrides)
    return DiTConfig(**values)


def first_dtype(source: DiffusersTransformer) -> torch.dtype:
    name, file = min(source.key_files.items(), key=lambda item: item[0].startswith("transformer_blocks"))
    with safe_open(str(file), framework="pt") as handle:
        return handle.get_tensor(name).dtype


def check_source_keys(source: DiffusersTransformer, expected: dict[str, tuple[int, ...]]) -> None:
    unknown, misshapen = [], []
    mapped: set[str] = set()
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(set(source.key_files.values())):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    for key, shape in shapes.items():
        target = diffusers_to_ttt_key(key)
        if target is None or target not in expected:
            unknown.append(key)
            continue
        mapped.add(target)
        if expected[target] != shape:
            misshapen.append(f"{key}: {shape} in the source, {expected[target]} expected for {target}")
    missing = sorted(
        ttt_to_diffusers_key(name) or name
        for name in expected
        if ttt_to_diffusers_key(name) and name not in mapped
    )
    problems = []
    if missing:
        problems.append(
            f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    if unknown:
        problems.append(f"unexpected keys ({len(unknown)}): {', '.join(sorted(unknown)[:20])}")
    if misshapen:
        problems.append(f"misshapen keys ({len(misshapen)}): {'; '.join(misshapen[:20])}")
    if problems:
        raise ConversionError(f"{source.folder} does not match its config.json:\n  " + "\n  ".join(problems))
