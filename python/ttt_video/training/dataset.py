"""The dataset folder of ``prepare`` (``data.dataset.DatasetFolder``, docs/training.md "Data"), read for
training: dataset.json checked against the job config, the manifest's clips of the configured length.

``open_dataset`` keeps the clips whose segment count and latent frame count are the ones
``eval.sampling_num_frames`` (12n + 1) asks for, and reads each clip's tensors with their shapes checked.
``training.jsonl_paths`` may name another manifest; its relative paths start at ``training.dataset_path``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..contracts.config import ConfigError, Issue, segment_count
from ..data.annotations import DataError
from ..data.dataset import FORMAT, VERSION, DatasetFolder

VAE_DOWNSCALE = 8  # pixels per latent, each spatial side
MANIFEST_KEYS = ("segments", "latent_frames", "latents", "text")
INFO_KEYS = ("width", "height", "latent_channels", "txt_maxlen", "text_dim")


def _error(message: str, file: Path, line: int | None = None) -> DataError:
    return DataError([Issue("", message, line, file=str(file))], file)


class _Folder(DatasetFolder):
    """A dataset folder whose manifest may live elsewhere (``training.jsonl_paths``)."""

    def __init__(self, path: Path, manifest: Path | None) -> None:
        super().__init__(path)
        self._manifest = manifest

    @property
    def manifest_file(self) -> Path:
        return self._manifest or super().manifest_file


@dataclass(frozen=True)
class Clip:
    """One finished clip of the manifest."""

    id: str
    segments: int
    latent_frames: int
    entry: dict[str, Any]  # its manifest line


@dataclass(frozen=True)
class Dataset:
    """The clips a run trains on, and the shapes every one of them must have."""

    folder: DatasetFolder
    info: dict[str, Any]
    clips: list[Clip]
    moments_shape: tuple[int, int, int, int]  # (T, 2C, h, w)
    text_shape: tuple[int, int, int]  # (n, L, D)
    skipped: int  # manifest clips of another length
    null_text: torch.Tensor | None = None  # (1, L, D): a dropped text becomes it (None: zeros)

    @property
    def root(self) -> Path:
        return self.folder.path

    def load_clip(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
        """``moments (T, 2C, h, w)`` and ``text (n, L, D)`` of ``clip``, shapes checked."""
        try:
            moments, text = self.folder.read_clip(clip.entry)
        except (OSError, SafetensorError, KeyError) as error:
            files = f"{clip.entry['latents']}, {clip.entry['text']}"
            message = f"clip {clip.id} ({files}): cannot read its tensors ({error}); run prepare again"
            raise _error(message, self.root) from None
        for key, tensor, shape in (("moments", moments, self.moments_shape), ("text", text, self.text_shape)):
            if tuple(tensor.shape) != shape:
                raise _error(
                    f"clip {clip.id}: {key!r} has shape {tuple(tensor.shape)}, expected {shape} (from "
                    "dataset.json and the config); the clip was prepared with other settings",
                    self.root / clip.entry["latents" if key == "moments" else "text"],
                )
        return moments, text


def read_dataset_info(folder: DatasetFolder) -> dict[str, Any]:
    path = folder.info_file
    try:
        info = folder.read_info()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _error(f"not readable JSON ({error})", path) from None
    if info is None:
        raise _error("not found: training.dataset_path must be a folder that `ttt-video prepare` wrote", path)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise _error(f"not a ttt-video dataset (format must be {FORMAT!r})", path)
    if info.get("version") != VERSION:
        raise _error(
            f"dataset version {info.get('version')!r}, this version reads {VERSION}; prepare it again", path
        )
    for key in INFO_KEYS:
        if isinstance(info.get(key), bool) or not isinstance(info.get(key), int) or info[key] < 1:
            raise _error(f"{key!r} must be a positive integer, got {info.get(key)!r}", path)
    return info


def read_clips(folder: DatasetFolder) -> list[Clip]:
    """The manifest's clips (a later line of an id replaces an earlier one)."""
    if not folder.manifest_file.is_file():
        raise _error(
            "not found: the dataset has no finished clip yet (ttt-video prepare)", folder.manifest_file
        )
    clips = []
    for clip_id, entry in folder.read_manifest().items():
        missing = [key for key in MANIFEST_KEYS if key not in entry]
        if missing:
            raise _error(f"the entry of clip {clip_id} has no {', '.join(missing)}", folder.manifest_file)
        clips.append(Clip(str(clip_id), int(entry["segments"]), int(entry["latent_frames"]), entry))
    return clips


def _check_fits_config(info: dict[str, Any], cfg: Any, where: Path) -> None:
    """The dataset's frame size, text length and channels must be the ones of the config."""
    pairs = (
        ("eval.image_width", cfg.eval.image_width, "width"),
        ("eval.image_height", cfg.eval.image_height, "height"),
        ("eval.txt_maxlen", cfg.eval.txt_maxlen, "txt_maxlen"),
        ("eval.latent_channels", cfg.eval.latent_channels, "latent_channels"),
    )
    issues = [
        Issue(field, f"is {value} but the dataset {where} has {key} {info[key]}; set {field} = {info[key]}")
        for field, value, key in pairs
        if value != info[key]
    ]
    if issues:
        raise ConfigError(issues)


def _select(clips: list[Clip], segments: int, frames: int, manifest: Path) -> list[Clip]:
    chosen = [c for c in clips if c.segments == segments and c.latent_frames == frames]
    if not chosen:
        found = Counter(f"{c.segments} segment(s) / {c.latent_frames} latent frames" for c in clips)
        listing = ", ".join(f"{count} of {kind}" for kind, count in sorted(found.items())) or "none"
        raise _error(
            f"no clip has {segments} segment(s) and {frames} latent frames, which eval.sampling_num_frames = "
            f"{frames} needs; the manifest has {listing}. Prepare clips of {3 * segments} s, or set "
            "eval.sampling_num_frames to a length the dataset has",
            manifest,
        )
    return chosen


def read_null_text(folder: DatasetFolder, text_shape: tuple[int, int, int]) -> torch.Tensor:
    """T5 of the empty prompt ``(1, L, D)`` that `prepare` wrote, for ``training.null_text = "empty_prompt"``."""
    path = folder.null_text_file
    fix = (
        "run `ttt-video prepare` on this dataset again (it writes the file and skips the finished clips), "
        'or set training.null_text = "zeros"'
    )
    if not path.is_file():
        raise _error(f"not found: text dropout to the empty prompt needs it; {fix}", path)
    try:
        text = load_file(str(path))["text"]
    except (OSError, SafetensorError, KeyError) as error:
        raise _error(f"cannot read its 'text' tensor ({error}); {fix}", path) from None
    if tuple(text.shape) != (1, *text_shape[1:]):
        raise _error(f"'text' has shape {tuple(text.shape)}, expected {(1, *text_shape[1:])}; {fix}", path)
    return text


def open_dataset(cfg: Any) -> Dataset:
    """The training clips of ``cfg`` (``training.dataset_path``, ``training.jsonl_paths``)."""
    if cfg.training.dataset_path is None:
        message = "is needed to train: the folder that `ttt-video prepare` wrote"
        raise ConfigError([Issue("training.dataset_path", message)])
    manifest = Path(cfg.training.jsonl_paths) if cfg.training.jsonl_paths else None
    folder = _Folder(Path(cfg.training.dataset_path), manifest)
    info = read_dataset_info(folder)
    _check_fits_config(info, cfg, folder.path)
    clips = read_clips(folder)
    segments, frames = segment_count(cfg), cfg.eval.sampling_num_frames
    chosen = _select(clips, segments, frames, folder.manifest_file)
    height, width = info["height"] // VAE_DOWNSCALE, info["width"] // VAE_DOWNSCALE
    text_shape = (segments, info["txt_maxlen"], info["text_dim"])
    to_empty_prompt = cfg.training.text_dropout > 0 and cfg.training.null_text == "empty_prompt"
    return Dataset(
        folder=folder,
        info=info,
        clips=chosen,
        moments_shape=(frames, 2 * info["latent_channels"], height, width),
        text_shape=text_shape,
        skipped=len(clips) - len(chosen),
        null_text=read_null_text(folder, text_shape) if to_empty_prompt else None,
    )
