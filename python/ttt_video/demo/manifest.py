"""`manifest.json` of a shipped demo bundle: the sha256 and size of every other file in the folder, and
how the bundle was made (command, date, machine, timings, scores). `check_manifest` verifies a folder."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(folder: str | os.PathLike) -> list[str]:
    """Every file under `folder` but its top-level manifest, as sorted POSIX paths relative to it."""
    folder = Path(folder)
    names = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(name for name in names if name != MANIFEST)


def folder_bytes(folder: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def write_manifest(folder: str | os.PathLike, info: dict) -> Path:
    """Write `folder/manifest.json`: `info` plus `files: {path: {sha256, bytes}}` and `total_bytes`."""
    folder = Path(folder)
    files = {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in bundle_files(folder)
    }
    content = {**info, "files": files, "total_bytes": sum(f["bytes"] for f in files.values())}
    path = folder / MANIFEST
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path


def check_manifest(folder: str | os.PathLike) -> list[str]:
    """Problems of `folder` against its manifest (empty when every file is there with its sha256 and
    no other file exists)."""
    folder = Path(folder)
    listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    present = bundle_files(folder)
    problems = [f"{name}: listed in {MANIFEST} but missing" for name in sorted(set(listed) - set(present))]
    problems += [f"{name}: not listed in {MANIFEST}" for name in sorted(set(present) - set(listed))]
    for name in sorted(set(listed) & set(present)):
        actual = sha256_file(folder / name)
        if actual != listed[name]["sha256"]:
            problems.append(f"{name}: sha256 {actual}, manifest says {listed[name]['sha256']}")
    return problems
