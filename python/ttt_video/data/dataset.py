"""The dataset folder that `prepare` writes and `train` reads (docs/training.md, "Data"):

    DATASET/dataset.json                   the settings and weights it was made with (written first)
    DATASET/manifest.jsonl                 one line per finished clip (appended last, one os.write)
    DATASET/latents/<id>.safetensors       {"moments": (T, 2C, h, w)}
    DATASET/text/<id>.safetensors          {"text": (n, L, D)}
    DATASET/null_text.safetensors          {"text": (1, L, D)}  T5 of the empty prompt (text dropout)

Every file is written under a temporary name (``.<name>.tmp-<pid>``), flushed to disk and renamed, so a
killed run leaves no truncated file under a final name; a clip counts as done only once its manifest line
exists, and a re-run encodes the others again (removing their stale temporary files first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from ..contracts.config import ConfigError, Issue
from .annotations import DataError

FORMAT = "ttt-video-dataset"
VERSION = 1
INFO_FILE = "dataset.json"
MANIFEST_FILE = "manifest.jsonl"
LATENTS_DIR = "latents"
TEXT_DIR = "text"
NULL_TEXT_FILE = "null_text.safetensors"
# What each dataset.json field is set by, for the message that refuses a re-run with other settings.
INFO_SOURCES = {
    "fps": "eval.sampling_fps",
    "width": "eval.image_width",
    "height": "eval.image_height",
    "txt_maxlen": "eval.txt_maxlen",
    "dtype": "eval.dtype",
    "window_frames": "--window-frames",
    "latent_channels": "the VAE",
    "text_dim": "the text encoder",
    "vae": "the VAE weights",
    "text_encoder": "the text encoder weights",
}
# Recorded but not compared: the same weights from a moved bundle make the same dataset.
INFO_UNCHECKED = ("bundle",)


def write_file_atomic(path: Path, data: bytes) -> None:
    """``data`` under ``.<name>.tmp-<pid>``, fsync'd, then renamed to ``path``; the temporary file is
    removed when anything fails before the rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def info_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``fps (eval.sampling_fps) is 16 there and 24 now`` for each compared field that differs."""
    out = []
    for key in sorted(set(before) | set(after)):
        if key in INFO_UNCHECKED or before.get(key) == after.get(key):
            continue
        source = f" ({INFO_SOURCES[key]})" if key in INFO_SOURCES else ""
        out.append(
            f"{key}{source} is {json.dumps(before.get(key))} there and {json.dumps(after.get(key))} now"
        )
    return out


class DatasetFolder:
    """A dataset folder: its settings, its manifest and its per-clip tensor files."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def info_file(self) -> Path:
        return self.path / INFO_FILE

    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST_FILE

    def create(self) -> None:
        for folder in (self.path, self.path / LATENTS_DIR, self.path / TEXT_DIR):
            folder.mkdir(parents=True, exist_ok=True)

    def read_info(self) -> dict[str, Any] | None:
        if not self.info_file.is_file():
            return None
        return json.loads(self.info_file.read_text(encoding="utf-8"))

    def check_info(self, info: dict[str, Any], write: bool) -> None:
        """Refuses a folder made with other settings (naming each difference); ``write`` (rank 0) writes
        dataset.json when the folder has none yet."""
        existing = self.read_info()
        if existing is None:
            if write:
                write_file_atomic(self.info_file, (json.dumps(info, indent=2) + "\n").encode())
            return
        differences = info_differences(existing, info)
        if differences:
            message = (
                f"{self.path} holds a dataset made with other settings ({'; '.join(differences)}); "
                "write to another folder (--out), delete this one, or use its settings"
            )
            raise ConfigError([Issue("dataset", message)])

    def read_manifest(self) -> dict[str, dict[str, Any]]:
        """The finished clips by id. A line that is not an entry is refused: it was not written by prepare."""
        if not self.manifest_file.is_file():
            return {}
        entries, issues = {}, []
        for number, line in enumerate(self.manifest_file.read_text(encoding="utf-8").split("\n"), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entries[entry["id"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                message = "is not a manifest entry (damaged); delete this line and run prepare again"
                issues.append(Issue("", message, number, file=str(self.manifest_file)))
        if issues:
            raise DataError(issues, self.manifest_file)
        return entries

    def remove_partial(self, clip_id: str) -> None:
        """Temporary files that a killed run left for this clip."""
        for folder in (LATENTS_DIR, TEXT_DIR):
            for stale in (self.path / folder).glob(f".{clip_id}.safetensors.tmp-*"):
                stale.unlink(missing_ok=True)

    def write_clip(self, entry: dict[str, Any], moments: torch.Tensor, text: torch.Tensor) -> None:
        """The clip's two tensor files, then its manifest line (one ``os.write`` under O_APPEND)."""
        write_file_atomic(self.path / entry["latents"], save({"moments": moments.contiguous()}))
        write_file_atomic(self.path / entry["text"], save({"text": text.contiguous()}))
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.manifest_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
        finally:
            os.close(fd)
        if written != len(line):
            raise OSError(f"{self.manifest_file}: wrote {written} of {len(line)} bytes (is the disk full?)")

    @property
    def null_text_file(self) -> Path:
        return self.path / NULL_TEXT_FILE

    def write_null_text(self, text: torch.Tensor) -> None:
        """T5 of the empty prompt, ``(1, L, D)``: what a dropped sample's text becomes in training
        (``training.null_text = "empty_prompt"``), as sampling's unconditional branch encodes it."""
        write_file_atomic(self.null_text_file, save({"text": text.contiguous()}))

    def read_clip(self, entry: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``moments (T, 2C, h, w)`` and ``text (n, L, D)`` of a manifest entry."""
        moments = load_file(str(self.path / entry["latents"]))["moments"]
        text = load_file(str(self.path / entry["text"]))["text"]
        return moments, text


def clip_paths(clip_id: str) -> dict[str, str]:
    """The manifest's relative paths of a clip's two files."""
    return {
        "latents": f"{LATENTS_DIR}/{clip_id}.safetensors",
        "text": f"{TEXT_DIR}/{clip_id}.safetensors",
    }
