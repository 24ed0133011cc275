"""A model bundle (contract 4): names and bundle.json from ``generated`` (sdk/contracts/bundle.ts), and
``inspect_bundle``, which reports what a bundle folder holds without loading any weights.

`inspect_bundle(path)` looks at `transformer/`, `vae/`, `text_encoder/` and `tokenizer/`: which exist, what
their `config.json` says, and for every `*.safetensors` file its tensor count, data bytes and dtypes, read
from the file's header only. Tensor data is never read and pickled checkpoints (`*.bin`, `*.pt`) are
listed, never opened. The answer is JSON-able (the bridge sends it to TypeScript as is); problems are
reported in it rather than raised, so one broken file does not hide the rest.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import jsonschema

from ..weights.errors import WeightsError
from ..weights.safetensors_io import read_header, read_json
from .generated import BUNDLE_COMPONENTS, BUNDLE_FORMAT, BUNDLE_INFO_FILE, BUNDLE_INFO_SCHEMA

COMPONENTS = tuple(BUNDLE_COMPONENTS)
# Components whose weights the pipeline loads; the tokenizer has none.
WEIGHTED = ("transformer", "vae", "text_encoder")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def write_bundle_info(dst: str | Path, **fields: Any) -> None:
    """Writes ``bundle.json`` (validated against the contract) atomically."""
    info = {"format": BUNDLE_FORMAT, "version": 1, **fields}
    jsonschema.validate(info, BUNDLE_INFO_SCHEMA)
    path = Path(dst) / BUNDLE_INFO_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


def read_bundle_info(bundle: str | Path) -> dict[str, Any]:
    """``bundle.json`` of a bundle, or {} for a folder made by hand (the latent scale then defaults to 1.0)."""
    path = Path(bundle) / BUNDLE_INFO_FILE
    if not path.is_file():
        return {}
    info = read_json(path, "the bundle description")
    try:
        jsonschema.validate(info, BUNDLE_INFO_SCHEMA)
    except jsonschema.ValidationError as e:
        raise WeightsError(f"{path}: {e.message}; convert the bundle again (ttt-video convert)") from None
    return info


def safetensors_summary(path: str | Path) -> dict[str, Any]:
    """`{file, bytes, tensors, parameters, tensor_bytes, dtypes: {dtype: count}}` or `{file, error}`."""
    path = Path(path)
    out: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size}
    try:
        header = read_header(path)
    except (OSError, WeightsError) as e:
        out["error"] = str(e)
        return out
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    dtypes: dict[str, int] = {}
    parameters = 0
    tensor_bytes = 0
    for entry in tensors.values():
        dtype = str(entry.get("dtype"))
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
        parameters += math.prod(int(d) for d in entry.get("shape", []))
        begin, end = entry["data_offsets"]
        tensor_bytes += end - begin
    out.update(
        tensors=len(tensors),
        parameters=parameters,
        tensor_bytes=tensor_bytes,
        dtypes=dict(sorted(dtypes.items())),
    )
    if isinstance(header.get("__metadata__"), dict):
        out["metadata"] = header["__metadata__"]
    return out


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path.name}: {e}"


def inspect_component(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    info: dict[str, Any] = {"present": folder.is_dir(), "path": str(folder)}
    if not info["present"]:
        return info
    errors: list[str] = []
    files = sorted(p for p in folder.iterdir() if p.is_file())
    info["files"] = [p.name for p in files]

    config = folder / "config.json"
    info["config"] = None
    if config.is_file():
        info["config"], err = _read_json(config)
        if err:
            errors.append(err)

    shards = [safetensors_summary(p) for p in files if p.suffix == ".safetensors"]
    errors += [s["error"] for s in shards if "error" in s]
    good = [s for s in shards if "error" not in s]
    dtypes: dict[str, int] = {}
    for s in good:
        for k, v in s["dtypes"].items():
            dtypes[k] = dtypes.get(k, 0) + v
    info["safetensors"] = {
        "files": shards,
        "tensors": sum(s["tensors"] for s in good),
        "parameters": sum(s["parameters"] for s in good),
        "bytes": sum(s["tensor_bytes"] for s in good),
        "dtypes": dict(sorted(dtypes.items())),
    }

    # A sharded checkpoint: every shard its index names must be there.
    for index in (p for p in files if p.name.endswith(".safetensors.index.json")):
        data, err = _read_json(index)
        if err:
            errors.append(err)
            continue
        weight_map = data.get("weight_map", {}) if isinstance(data, dict) else {}
        wanted = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        missing = [name for name in wanted if not (folder / name).is_file()]
        info["safetensors"]["index"] = {"file": index.name, "shards": wanted, "missing": missing}
        if missing:
            errors.append(f"{index.name} names shards that are missing: {', '.join(missing)}")

    info["pickle_files"] = [p.name for p in files if p.suffix in PICKLE_SUFFIXES]
    info["errors"] = errors
    return info


def inspect_bundle(path: str | Path) -> dict[str, Any]:
    """A JSON-able description of a model bundle folder; see the module docstring."""
    root = Path(path).expanduser().resolve()
    components = {name: inspect_component(root / name) for name in COMPONENTS}
    missing = [name for name, c in components.items() if not c["present"]]
    problems = [f"{name}/ is missing" for name in missing]
    for name in WEIGHTED:
        c = components[name]
        if not c["present"]:
            continue
        if c["config"] is None:
            problems.append(f"{name}/config.json is missing or unreadable")
        if c["safetensors"]["tensors"] == 0:
            hint = " (only pickled weights, which are not loaded)" if c["pickle_files"] else ""
            problems.append(f"{name}/ has no safetensors weights{hint}")
        problems += [f"{name}: {e}" for e in c["errors"]]
    if components["tokenizer"]["present"]:
        problems += [f"tokenizer: {e}" for e in components["tokenizer"]["errors"]]
    return {
        "path": str(root),
        "exists": root.is_dir(),
        "components": components,
        "missing": missing,
        "problems": problems,
        "complete": root.is_dir() and not problems,
    }
