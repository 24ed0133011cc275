"""Reading VAE tensors: diffusers folders (safetensors), SAT `3d-vae.pt` (tensors only), strict key checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ..weights.errors import WeightsError, WeightsMissingError
from ..weights.safetensors_io import load_tensors, shard_files
from .config import VAEConfig
from .keys import sat_to_diffusers_key

DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
DIFFUSERS_WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder.", "quant_conv."),
    "decoder": ("decoder.",),
}
_LISTED_KEYS = 20


class VAEWeightsError(WeightsError):
    """VAE weights that are missing, misshapen, or in a format this loader refuses (code WEIGHTS)."""


def check_parts(parts: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Validate `parts` and return it in the canonical order ("encoder", "decoder")."""
    if isinstance(parts, str):
        parts = (parts,)
    unknown = [p for p in parts if p not in PART_PREFIXES]
    if unknown or not parts:
        raise ValueError(
            f"parts must be a non-empty selection of {tuple(PART_PREFIXES)}, got {tuple(parts)!r}; "
            "sampling needs ('decoder',), data preparation ('encoder',)"
        )
    return tuple(p for p in PART_PREFIXES if p in parts)


def part_prefixes(parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(prefix for part in parts for prefix in PART_PREFIXES[part])


def resolve_vae_folder(path: Path) -> Path:
    if path.is_file():
        raise VAEWeightsError(
            f"{path} is a file; from_pretrained expects a diffusers VAE folder (config.json + safetensors). "
            "A SAT 3d-vae.pt is loaded with CogVideoXVAE.from_sat_checkpoint."
        )
    for folder in (path, path / "vae"):
        if (folder / "config.json").is_file():
            return folder
    raise VAEWeightsError(
        f"{path}: no config.json here nor in {path / 'vae'}; expected a diffusers AutoencoderKLCogVideoX "
        "folder such as <CogVideoX-5b snapshot>/vae"
    )


def safetensors_files(folder: Path) -> list[Path]:
    """diffusers' weights file (or its shards), else the folder's one other .safetensors file."""
    try:
        return shard_files(folder, DIFFUSERS_WEIGHTS_NAME, DIFFUSERS_WEIGHTS_INDEX_NAME)
    except WeightsMissingError:
        candidates = sorted(folder.glob("*.safetensors"))
        if len(candidates) != 1:
            raise
        return candidates


def read_safetensors(files: list[Path], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """The tensors whose names start with one of `prefixes`; the others are never read."""
    return load_tensors(files, prefix=prefixes)


def read_sat_checkpoint(file: Path, num_levels: int, prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    """The SAT state dict renamed to diffusers keys (spec 13.2), kept if they start with `prefixes`.

    Read with `torch.load(weights_only=True)`: tensors only, no code is unpickled.
    """
    if not file.is_file():
        raise VAEWeightsError(f"{file}: no such file (expected the SAT VAE checkpoint, e.g. 3d-vae.pt)")
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise VAEWeightsError(
            f"{file}: cannot be read as a tensors-only checkpoint ({type(error).__name__}: {error}). "
            "Only plain state dicts are accepted; objects that need code to unpickle are refused."
        ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping):
        raise VAEWeightsError(
            f"{file}: expected a dict of tensors (or {{'state_dict': ...}}), got {type(loaded)}"
        )
    tensors: dict[str, Tensor] = {}
    for key, value in state.items():
        renamed = sat_to_diffusers_key(str(key), num_levels)
        if renamed is not None and renamed.startswith(prefixes) and isinstance(value, Tensor):
            tensors[renamed] = value
    return tensors


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED_KEYS])
    more = f", ... and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else ""
    return shown + more


def check_vae_tensors(
    expected: Mapping[str, Tensor],
    found: Mapping[str, Tensor],
    source: str,
    config: VAEConfig,
    parts: tuple[str, ...] = ("decoder",),
) -> None:
    """Raise VAEWeightsError naming every missing, misshapen or unexpected tensor of the loaded `parts`."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    misshapen = sorted(
        f"{k} (expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)})"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listing(missing)}")
    if misshapen:
        problems.append(f"{len(misshapen)} misshapen: {_listing(misshapen)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
    what = " and ".join(parts)
    if problems:
        architecture = (
            f"block_out_channels={list(config.block_out_channels)}, layers_per_block={config.layers_per_block}, "
            f"latent_channels={config.latent_channels}, use_quant_conv={config.use_quant_conv}"
        )
        raise VAEWeightsError(
            f"{source}: the {what} weights do not match the architecture of the config ({architecture}). "
            + "; ".join(problems)
            + ". Check that config.json belongs to these weights and that they are a CogVideoX VAE."
        )
    not_float = sorted(k for k, v in found.items() if not v.dtype.is_floating_point)
    if not_float:
        raise VAEWeightsError(f"{source}: non-floating-point {what} tensors: {_listing(not_float)}")
