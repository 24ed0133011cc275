"""torch.distributed.checkpoint (DCP) folders: the research system's checkpoint format (spec 8.4, 8.5).

A DCP folder's ``.metadata`` is a pickle, which torch's own reader loads with ``pickle.load``: a crafted
file would run code. ``SafeMetadataReader`` reads it with an unpickler that builds only the classes DCP
metadata is made of (allowlisted below), and every DCP read of this package goes through it. Tensors
are read as DCP reads them (``torch.load(weights_only=True)`` for each tensor's bytes).
"""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WeightsError, WeightsMissingError

# What DCP metadata is made of (torch 2.x): module -> class names (None: any torch.dtype of torch)
METADATA_CLASSES: dict[str, frozenset[str] | None] = {
    "torch.distributed.checkpoint.metadata": frozenset(
        {
            "Metadata",
            "MetadataIndex",
            "StorageMeta",
            "TensorProperties",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "_MEM_FORMAT_ENCODING",
        }
    ),  # fmt: skip
    "torch.distributed.checkpoint.filesystem": frozenset({"_StorageInfo"}),
    "torch.serialization": frozenset({"_get_layout"}),
    "pathlib": frozenset({"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"}),
    "collections": frozenset({"OrderedDict"}),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            return getattr(torch, name)
        if name in (METADATA_CLASSES.get(module) or ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of DCP metadata; refusing to load it")


def __getattr__(name: str) -> Any:
    # SafeMetadataReader is built on first use: importing torch.distributed.checkpoint costs about 2 s,
    # which sampling (the common case, no DCP folder) should not pay at start-up.
    if name == "SafeMetadataReader":
        return _safe_metadata_reader_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _safe_metadata_reader_class() -> type:
    from torch.distributed.checkpoint import FileSystemReader

    class SafeMetadataReader(FileSystemReader):
        """torch's FileSystemReader whose ``.metadata`` is unpickled with the allowlist above."""

        read_metadata = _read_metadata

    return SafeMetadataReader


def _read_metadata(self: Any, *args: Any, **kwargs: Any) -> Any:
    """SafeMetadataReader.read_metadata: the ``.metadata`` pickle through the allowlist unpickler."""
    from torch.distributed.checkpoint.metadata import StorageMeta

    rank = kwargs.get("rank")
    get_path = getattr(self, "_get_metadata_path", None)
    path = get_path(rank) if get_path is not None else self.fs.concat_path(self.path, ".metadata")
    try:
        with self.fs.create_stream(path, "rb") as stream:
            metadata = _MetadataUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as error:
        raise WeightsError(
            f"{path}: not a DCP metadata file this package loads ({error}); write the checkpoint again"
        ) from error
    if getattr(metadata, "storage_meta", None) is None:
        metadata.storage_meta = StorageMeta()
    metadata.storage_meta.load_id = self.load_id
    return metadata


def stored_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """``state_dict_metadata`` of a DCP folder: the stored keys and their shapes, read safely."""
    return _safe_metadata_reader_class()(str(folder)).read_metadata().state_dict_metadata


def load_dcp(state: dict[str, Any], folder: str | os.PathLike, no_dist: bool) -> None:
    """``dcp.load`` into ``state`` (in place) through the safe metadata reader."""
    import torch.distributed.checkpoint as dcp

    dcp.load(state, storage_reader=_safe_metadata_reader_class()(str(folder)), no_dist=no_dist)


# ---------------------------------------------------------------------------------------------------
def load_dcp_weights(model: nn.Module, checkpoint_dir: str | os.PathLike) -> None:
    """Loads a DCP checkpoint (spec 8.4): `{"model": state}` of a training run, or a flat state dict.

    Keys may carry the reference's `dit.` prefix. Works without a process group (single process) and
    inside one (each rank reads what it needs).
    """
    folder = Path(checkpoint_dir)
    if not (folder / ".metadata").is_file():
        raise WeightsMissingError(
            f"{folder} is not a torch.distributed.checkpoint folder (no .metadata file); check checkpoint.init_state_dir"
        )
    stored = stored_metadata(folder)
    own = model.state_dict()
    for prefix in ("model.dit.", "model.", "dit.", ""):
        if not all(f"{prefix}{name}" in stored for name in own):
            continue
        misshapen = [
            f"{name}: {tuple(stored[prefix + name].size)} stored, {tuple(t.shape)} expected"
            for name, t in own.items()
            if tuple(getattr(stored[prefix + name], "size", t.shape)) != tuple(t.shape)
        ]
        if misshapen:
            raise WeightsError(
                f"{folder}: the checkpoint does not hold this model's weights; misshapen: {'; '.join(misshapen[:10])} "
                "(is it a checkpoint of another ssm_layer or size?)"
            )
        state = {f"{prefix}{name}": tensor for name, tensor in own.items()}
        load_dcp(state, folder, no_dist=not _distributed())
        model.load_state_dict({name: state[f"{prefix}{name}"] for name in own}, strict=True)
        return
    sample = sorted(stored)[:5]
    missing = sorted(name for name in own if name not in stored and f"dit.{name}" not in stored)[:10]
    raise WeightsError(
        f"{folder}: the checkpoint does not hold this model's weights (tried flat, 'dit.', 'model.' and "
        f"'model.dit.' prefixes). Missing for example: {missing}; the checkpoint has e.g. {sample}"
    )


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
