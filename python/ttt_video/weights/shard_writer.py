"""Safetensors shards of bounded size, written one at a time, with an index when there are several."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


def follow_umask(path: Path) -> None:
    """Gives a written file the permissions the umask allows (safetensors writes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


class ShardWriter:
    """Collects tensors into safetensors shards of at most `max_bytes` (one shard in memory at a time);
    `report` gets `{file, bytes}` for each shard once it has its final name."""

    def __init__(self, folder: Path, max_bytes: int, report: Callable[[dict[str, Any]], None]):
        self.folder, self.max_bytes, self.report = folder, max_bytes, report
        self.current: dict[str, torch.Tensor] = {}
        self.current_bytes = 0
        self.files: list[tuple[str, list[str], int]] = []
        self.total_bytes = 0

    @property
    def shards(self) -> int:
        return len(self.files)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.current and self.current_bytes + size > self.max_bytes:
            self._flush()
        self.current[name] = tensor
        self.current_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        file_name = f".shard-{len(self.files) + 1:05d}.safetensors"
        save_file(self.current, str(self.folder / file_name), metadata={"format": "pt"})
        self.files.append((file_name, list(self.current), self.current_bytes))
        self.current, self.current_bytes = {}, 0

    def close(self) -> list[str]:
        """Names the shards by their final names (one file: model.safetensors) and writes the index."""
        if self.current:
            self._flush()
        count = len(self.files)
        weight_map = {}
        finals = []
        for i, (file_name, names, size) in enumerate(self.files, start=1):
            final = WEIGHTS_NAME if count == 1 else f"model-{i:05d}-of-{count:05d}.safetensors"
            os.replace(self.folder / file_name, self.folder / final)
            follow_umask(self.folder / final)
            weight_map.update(dict.fromkeys(names, final))
            finals.append(final)
            self.report({"file": final, "bytes": size})
        if count > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            (self.folder / WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        return finals
