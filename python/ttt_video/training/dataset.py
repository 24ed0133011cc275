"""The dataset folder that ``prepare`` writes (TRAINING-CONTRACT.md), read for training.

    DATASET/dataset.json      {"format": "ttt-video-dataset", "version": 1, "width", "height",
                               "latent_channels", "txt_maxlen", "text_dim", ...}
    DATASET/manifest.jsonl    one finished clip a line: {"id", "segments", "latent_frames", "latents", "text", ...}
    DATASET/latents/<id>.safetensors   {"moments": (T, 2C, h, w)} mean then log-variance channels, unscaled
    DATASET/text/<id>.safetensors      {"text": (n, L, D)} T5 embeddings of the segment prompts

``open_dataset`` checks dataset.json against the job config and keeps the clips whose segment count and
latent frame count are the ones ``eval.sampling_num_frames`` (12n + 1) asks for.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..contracts.config import ConfigError, Issue, segment_count

DATASET_FORMAT = "ttt-video-dataset"
DATASET_VERSION = 1
DATASET_INFO = "dataset.json"
MANIFEST = "manifest.jsonl"
VAE_DOWNSCALE = 8  # pixels per latent, each spatial side
MANIFEST_KEYS = ("id", "segments", "latent_frames", "latents", "text")


class DatasetError(ValueError):
    """The dataset folder or one of its files cannot be used; the message names the file."""

    code = "DATA"


@dataclass(frozen=True)
class Clip:
    """One finished clip of the manifest: its files (absolute) and counts."""

    id: str
    segments: int
    latent_frames: int
    latents: Path
    text: Path


@dataclass(frozen=True)
class Dataset:
    """The clips a run trains on, and the shapes every one of them must have."""

    root: Path
    info: dict[str, Any]
    clips: list[Clip]
    moments_shape: tuple[int, int, int, int]  # (T, 2C, h, w)
    text_shape: tuple[int, int, int]  # (n, L, D)
    skipped: int  # manifest clips of another length

    def load_clip(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
        """``moments (T, 2C, h, w)`` and ``text (n, L, D)`` of ``clip``, shapes checked."""
        return (
            _read_tensor(clip.latents, "moments", self.moments_shape),
            _read_tensor(clip.text, "text", self.text_shape),
        )


def _read_tensor(path: Path, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            if key not in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                raise DatasetError(f"{path}: no tensor {key!r}; run `ttt-video prepare` again for this clip")
            tensor = handle.get_tensor(key)
    except (OSError, SafetensorError) as error:
        raise DatasetError(f"{path}: cannot read it ({error}); run `ttt-video prepare` again") from None
    if tuple(tensor.shape) != shape:
        raise DatasetError(
            f"{path}: {key!r} has shape {tuple(tensor.shape)}, expected {shape} (from dataset.json and the "
            "config); the clip was prepared with other settings"
        )
    return tensor


def read_dataset_info(root: Path) -> dict[str, Any]:
    path = root / DATASET_INFO
    if not path.is_file():
        raise DatasetError(
            f"{path} not found: training.dataset_path must be a folder `ttt-video prepare` wrote"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(info, dict) or info.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{path}: not a ttt-video dataset (format must be {DATASET_FORMAT!r})")
    if info.get("version") != DATASET_VERSION:
        raise DatasetError(
            f"{path}: dataset version {info.get('version')!r}, this version reads {DATASET_VERSION}; "
            "prepare the dataset again"
        )
    for key in ("width", "height", "latent_channels", "txt_maxlen", "text_dim"):
        if isinstance(info.get(key), bool) or not isinstance(info.get(key), int) or info[key] < 1:
            raise DatasetError(f"{path}: {key!r} must be a positive integer, got {info.get(key)!r}")
    return info


def read_manifest(path: Path, root: Path) -> list[Clip]:
    """The clips of a manifest, in file order; a later line for the same id replaces an earlier one."""
    if not path.is_file():
        raise DatasetError(f"{path} not found: the dataset has no finished clip yet (ttt-video prepare)")
    clips: dict[str, Clip] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            missing = [key for key in MANIFEST_KEYS if key not in entry]
        except (json.JSONDecodeError, TypeError):
            raise DatasetError(f"{path}:{number}: not a JSON object") from None
        if missing:
            raise DatasetError(f"{path}:{number}: the line has no {', '.join(missing)}")
        clip_id = str(entry["id"])
        clips[clip_id] = Clip(
            clip_id, int(entry["segments"]), int(entry["latent_frames"]),
            root / entry["latents"], root / entry["text"],
        )  # fmt: skip
    return list(clips.values())


def _check_fits_config(info: dict[str, Any], cfg: Any, where: Path) -> None:
    """The dataset's frame size and text length must be the ones of the config."""
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
        raise DatasetError(
            f"{manifest}: no clip has {segments} segment(s) and {frames} latent frames, which "
            f"eval.sampling_num_frames = {frames} needs; the manifest has {listing}. Prepare clips of "
            f"{3 * segments} s, or set eval.sampling_num_frames to a length the dataset has"
        )
    return chosen


def open_dataset(cfg: Any) -> Dataset:
    """The training clips of ``cfg`` (``training.dataset_path``, ``training.jsonl_paths``)."""
    if cfg.training.dataset_path is None:
        raise ConfigError(
            [Issue("training.dataset_path", "is needed to train (the folder of ttt-video prepare)")]
        )
    root = Path(cfg.training.dataset_path)
    info = read_dataset_info(root)
    _check_fits_config(info, cfg, root)
    manifest = Path(cfg.training.jsonl_paths) if cfg.training.jsonl_paths else root / MANIFEST
    clips = read_manifest(manifest, root)
    segments, frames = segment_count(cfg), cfg.eval.sampling_num_frames
    chosen = _select(clips, segments, frames, manifest)
    height, width = info["height"] // VAE_DOWNSCALE, info["width"] // VAE_DOWNSCALE
    return Dataset(
        root=root,
        info=info,
        clips=chosen,
        moments_shape=(frames, 2 * info["latent_channels"], height, width),
        text_shape=(segments, info["txt_maxlen"], info["text_dim"]),
        skipped=len(clips) - len(chosen),
    )
