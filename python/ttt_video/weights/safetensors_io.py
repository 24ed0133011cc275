"""The one safetensors reader of the package: validated headers, shard folders, tensors, fingerprints.

Headers are checked before any tensor is read (8-byte little-endian length, a JSON object whose data
offsets fit the file), so a truncated, empty or corrupted file is reported as a WeightsError that names
the file and the fix, never as a deserialisation error. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .errors import WeightsError, WeightsMissingError

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
FIX = "download or convert it again"


def read_header(path: str | Path) -> dict[str, Any]:
    """``{name: {dtype, shape, data_offsets}}`` (and ``__metadata__``) of a .safetensors file, validated."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightsError(
                f"{path}: {size} bytes, too short for a safetensors file (empty or truncated); {FIX}"
            )
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise WeightsError(
                f"{path}: its header claims {n} bytes but the file has {size} (truncated or not a safetensors file); {FIX}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: the header is not JSON ({e}); the file is corrupted, {FIX}") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: the header is not a JSON object; the file is corrupted, {FIX}")
    _check_offsets(path, header, size - 8 - n)
    return header


def _check_offsets(path: Path, header: dict[str, Any], data_bytes: int) -> None:
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not isinstance(offsets, list) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise WeightsError(
                f"{path}: tensor {name!r} has bad data_offsets {offsets!r}; the file is corrupted, {FIX}"
            )
        if offsets[1] > data_bytes:
            raise WeightsError(
                f"{path}: tensor {name!r} ends at byte {offsets[1]} of the data but the file holds {data_bytes} "
                f"(truncated); {FIX}"
            )


def tensor_shapes(files: Iterable[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, safetensors dtype) of every tensor of the files, from their headers only."""
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in files:
        for name, entry in read_header(file).items():
            if name == "__metadata__":
                continue
            if name in out:
                raise WeightsError(f"{file}: tensor {name!r} is also in another shard; rebuild the index")
            out[name] = (tuple(int(d) for d in entry["shape"]), str(entry["dtype"]))
    return out


def shard_files(folder: Path, weights_name: str, index_name: str) -> list[Path]:
    """``weights_name`` or the shards ``index_name`` lists (each must exist); WeightsMissingError if none."""
    index = folder / index_name
    if index.is_file():
        weight_map = read_json(index, "a safetensors index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise WeightsError(f"{index}: has no weight_map object; {FIX}")
        files = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise WeightsMissingError(f"{index} lists shards that are missing: {', '.join(missing)}; {FIX}")
        return files
    if (folder / weights_name).is_file():
        return [folder / weights_name]
    pickled = sorted(p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    hint = f" ({', '.join(pickled)} are pickle files, which are never loaded)" if pickled else ""
    raise WeightsMissingError(f"{folder}: no {weights_name} or {index_name}{hint}")


def load_tensors(
    files: Iterable[Path],
    prefix: str = "",
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, each copied into a fresh allocation on ``device``
    (tensors read from a file can be misaligned, which changes which CPU kernels run)."""
    out: dict[str, torch.Tensor] = {}
    for file in files:
        read_header(file)
        try:
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    if name.startswith(prefix):
                        tensor = handle.get_tensor(name)
                        fresh = torch.empty(tensor.shape, dtype=dtype or tensor.dtype, device=device)
                        out[name] = fresh.copy_(tensor)
        except SafetensorError as e:
            raise WeightsError(f"{file}: cannot be read as safetensors ({e}); {FIX}") from None
    return out


def fingerprint(files: Iterable[Path], samples: int = 4, sample_bytes: int = 4096) -> str:
    """A short hash of the files' names, sizes, headers, and of ``samples`` slices of each tensor's data
    spread over the file: it changes when weights change, without reading whole multi-GB files."""
    digest = hashlib.sha256()
    for file in sorted(Path(f) for f in files):
        header = read_header(file)
        digest.update(f"{file.name}:{file.stat().st_size}:".encode())
        digest.update(json.dumps(header, sort_keys=True).encode())
        with file.open("rb") as f:
            start = 8 + struct.unpack("<Q", f.read(8))[0]
            for _, entry in sorted((k, v) for k, v in header.items() if k != "__metadata__"):
                begin, end = entry["data_offsets"]
                for i in range(min(samples, max(1, (end - begin) // sample_bytes))):
                    f.seek(start + begin + (end - begin) * i // samples)
                    digest.update(f.read(min(sample_bytes, end - begin)))
    return digest.hexdigest()[:16]


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a WeightsError names the file, the problem and the fix."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsMissingError(f"{path} is missing ({what}); {FIX}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: {what} that is not valid JSON ({e}); {FIX}") from None
    if not isinstance(value, dict):
        raise WeightsError(f"{path}: {what} must be a JSON object; {FIX}")
    return value
