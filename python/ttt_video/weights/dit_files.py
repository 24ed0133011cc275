"""The DiT's folder: config.json and safetensors (one file, or shards with an index), read and written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..models.config import DiTConfig
from .errors import WeightsError, WeightsMissingError
from .safetensors_io import DTYPES, fingerprint, load_tensors, read_json, shard_files, tensor_shapes
from .shard_writer import WEIGHTS_INDEX_NAME, WEIGHTS_NAME, ShardWriter

CONFIG_NAME = "config.json"


def transformer_folder(path: str | os.PathLike) -> Path:
    """The folder holding the DiT's config.json: ``path`` itself, or ``path/transformer`` of a bundle."""
    folder = Path(path)
    if not (folder / CONFIG_NAME).is_file() and (folder / "transformer" / CONFIG_NAME).is_file():
        folder = folder / "transformer"
    if not (folder / CONFIG_NAME).is_file():
        raise WeightsMissingError(
            f"{folder / CONFIG_NAME} not found: expected a DiT folder with config.json and safetensors "
            "(a bundle's transformer/; ttt-video convert makes one)"
        )
    return folder


def read_dit_config(folder: Path) -> DiTConfig:
    try:
        return DiTConfig.from_dict(read_json(folder / CONFIG_NAME, "the DiT's config.json"))
    except (TypeError, ValueError) as e:
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(
            f"{folder / CONFIG_NAME}: {e}; convert the bundle again (ttt-video convert)"
        ) from None


def dit_files(folder: Path) -> list[Path]:
    return shard_files(folder, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)


def dit_fingerprint(folder: Path) -> str:
    return fingerprint(dit_files(folder))


def check_state_dict(model: nn.Module, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise WeightsError naming every missing, unexpected and misshapen key."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    misshapen = sorted(
        f"{name}: checkpoint {shapes[name]}, model {shape}"
        for name, shape in expected.items()
        if name in shapes and shapes[name] != shape
    )
    if missing or unexpected or misshapen:
        parts = [f"checkpoint {source} does not match the model config:"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)):
            if items:
                parts.append(f"  {label} ({len(items)}): " + ", ".join(items))
        raise WeightsError("\n".join(parts))


def checked_files(model: nn.Module, folder: Path) -> tuple[list[Path], torch.dtype]:
    """The weight files of ``folder`` after a strict header check against ``model``; and their dtype
    (float32 when the tensors mix dtypes)."""
    files = dit_files(folder)
    shapes = tensor_shapes(files)
    check_state_dict(model, {name: shape for name, (shape, _) in shapes.items()}, source=str(folder))
    stored = {DTYPES.get(dtype, torch.float32) for _, dtype in shapes.values()}
    return files, stored.pop() if len(stored) == 1 else torch.float32


def load_dit_state(model: nn.Module, folder: Path, device, dtype: torch.dtype | None) -> None:
    files, stored = checked_files(model, folder)
    state = load_tensors(files, device=torch.device(device or "cpu"), dtype=dtype or stored)
    model.load_state_dict(state, strict=True, assign=True)


def save_dit(model: nn.Module, config: DiTConfig, path: str | os.PathLike, max_shard_bytes: int) -> list[str]:
    """Writes ``config.json`` and the weights (sharded above ``max_shard_bytes``); returns the file names.
    Old weight files of the folder are removed first."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("model*.safetensors"), *folder.glob(WEIGHTS_INDEX_NAME)]:
        stale.unlink()
    (folder / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    writer = ShardWriter(folder, max_shard_bytes, lambda shard: None)
    for name, tensor in model.state_dict().items():
        writer.add(name, tensor.detach().contiguous().cpu())
    return writer.close()
